"""Response formats of a batch result: OpenAI's json / text / srt / verbose_json / vtt, our
additions, and the inverse used by the CLI's server mode."""

from __future__ import annotations

import json
import sys

import pytest
from openai.types.audio import TranscriptionVerbose

from whisper_streaming.batch import formats
from whisper_streaming.batch.formats import (
    MEDIA_TYPES,
    RESPONSE_FORMATS,
    language_code,
    language_name,
    render,
    result_from_verbose_json,
    srt_timestamp,
    to_json,
    to_srt,
    to_text,
    to_verbose_json,
    to_vtt,
    vtt_timestamp,
)
from whisper_streaming.core.batch import (
    AcousticFeatures,
    BatchResult,
    BatchSegment,
    BatchWord,
    SpeakerSummary,
    SpeakerTurn,
    StageTiming,
)
from whisper_streaming.errors import UsageError

FEATURES = AcousticFeatures(rms_dbfs=-23.0149, f0_median_hz=201.26, f0_min_hz=180.04, f0_max_hz=230.0, voiced_fraction=0.8123,
                            spectral_centroid_hz=1500.04, spectral_rolloff_hz=3000.06, mfcc_mean=tuple(float(i) / 3 for i in range(13)))
UNVOICED = AcousticFeatures(rms_dbfs=-60.0, f0_median_hz=None, f0_min_hz=None, f0_max_hz=None, voiced_fraction=0.0,
                            spectral_centroid_hz=4000.0, spectral_rolloff_hz=7000.0, mfcc_mean=(0.0,) * 13)


def _result(*, diarized: bool = True) -> BatchResult:
    a, b = ("SPEAKER_00", "SPEAKER_01") if diarized else (None, None)
    seg0 = BatchSegment(id=0, start_s=0.0, end_s=1.5, text=" Hello there.", avg_logprob=-0.21234, no_speech_prob=0.01234,
                        compression_ratio=1.23456,
                        words=(BatchWord(" Hello", 0.0, 0.6, 0.98765, a), BatchWord(" there.", 0.6, 1.5, 0.9, a)),
                        speaker=a, features=FEATURES)
    seg1 = BatchSegment(id=1, start_s=1.75, end_s=3.2004, text=" Hi & <bye> --> now", avg_logprob=-0.5, no_speech_prob=0.1,
                        compression_ratio=1.0, words=(BatchWord(" Hi", 1.75, 2.0, 0.5, b),), speaker=b, features=UNVOICED)
    seg2 = BatchSegment(id=2, start_s=3.3, end_s=4.0, text=" Again.", avg_logprob=-0.3, no_speech_prob=0.2, compression_ratio=1.1,
                        words=(BatchWord(" Again.", 3.3, 4.0, 0.7, b),), speaker=b)
    return BatchResult(
        language="en", duration_s=4.56789, text=" Hello there. Hi & <bye> --> now Again.", segments=(seg0, seg1, seg2),
        speakers=(SpeakerSummary("SPEAKER_00", 1.5, 1), SpeakerSummary("SPEAKER_01", 2.15, 2)) if diarized else (),
        turns=(SpeakerTurn(0.0, 1.5, "SPEAKER_00"), SpeakerTurn(1.75, 4.0, "SPEAKER_01")) if diarized else (),
        timings=(StageTiming("decode", 0.12345, 0.0270249), StageTiming("transcribe", 1.0, 0.2189)),
    )


EMPTY = BatchResult(language="en", duration_s=0.0, text="", segments=())


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("seconds,srt,vtt", [
    (0.0, "00:00:00,000", "00:00:00.000"),
    (1.5, "00:00:01,500", "00:00:01.500"),
    (61.0004, "00:01:01,000", "00:01:01.000"),
    (59.9996, "00:01:00,000", "00:01:00.000"),  # rounding carries into the minute
    (3723.456, "01:02:03,456", "01:02:03.456"),
    (36000 * 10 + 0.001, "100:00:00,001", "100:00:00.001"),  # past 99 hours: more digits, never wraps
    (-0.2, "00:00:00,000", "00:00:00.000"),
])
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert srt_timestamp(seconds) == srt
    assert vtt_timestamp(seconds) == vtt


# --------------------------------------------------------------------------- SRT, WebVTT, text


def test_srt_exact_text() -> None:
    assert to_srt(_result()) == (
        "1\n00:00:00,000 --> 00:00:01,500\n[SPEAKER_00] Hello there.\n\n"
        "2\n00:00:01,750 --> 00:00:03,200\n[SPEAKER_01] Hi & <bye> -> now\n\n"
        "3\n00:00:03,300 --> 00:00:04,000\n[SPEAKER_01] Again.\n\n"
    )


def test_vtt_exact_text() -> None:
    assert to_vtt(_result(diarized=False)) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "00:00:01.750 --> 00:00:03.200\nHi &amp; &lt;bye&gt; -&gt; now\n\n"
        "00:00:03.300 --> 00:00:04.000\nAgain.\n\n"
    )


def test_hour_long_times_and_skipped_empty_cues() -> None:
    segs = (
        BatchSegment(id=0, start_s=3599.9, end_s=3600.25, text=" Across\nthe hour.", avg_logprob=0, no_speech_prob=0, compression_ratio=1),
        BatchSegment(id=1, start_s=3601.0, end_s=3602.0, text="   ", avg_logprob=0, no_speech_prob=0, compression_ratio=1),
        BatchSegment(id=2, start_s=7325.5, end_s=7325.0, text="Backwards end.", avg_logprob=0, no_speech_prob=0, compression_ratio=1),
    )
    result = BatchResult(language="en", duration_s=7400.0, text="Across the hour. Backwards end.", segments=segs)
    assert to_srt(result) == ("1\n00:59:59,900 --> 01:00:00,250\nAcross the hour.\n\n"
                              "2\n02:02:05,500 --> 02:02:05,500\nBackwards end.\n\n")
    assert to_vtt(result) == ("WEBVTT\n\n00:59:59.900 --> 01:00:00.250\nAcross the hour.\n\n"
                              "02:02:05.500 --> 02:02:05.500\nBackwards end.\n\n")


def test_text_plain_and_diarized() -> None:
    assert to_text(_result(diarized=False)) == "Hello there. Hi & <bye> --> now Again.\n"
    # one line per run of the same speaker
    assert to_text(_result()) == "[SPEAKER_00] Hello there.\n[SPEAKER_01] Hi & <bye> --> now Again.\n"


def test_empty_result_in_every_format() -> None:
    assert to_text(EMPTY) == ""
    assert to_srt(EMPTY) == ""
    assert to_vtt(EMPTY) == "WEBVTT\n\n"
    assert to_json(EMPTY) == {"text": ""}
    assert to_verbose_json(EMPTY, words=True) == {"task": "transcribe", "language": "english", "duration": 0.0, "text": "",
                                                  "segments": [], "words": []}
    assert result_from_verbose_json(to_verbose_json(EMPTY, words=True)) == EMPTY


# --------------------------------------------------------------------------- verbose_json


def test_verbose_json_shape_and_rounding() -> None:
    d = to_verbose_json(_result(), words=True)
    assert list(d)[:6] == ["task", "language", "duration", "text", "segments", "words"]
    assert (d["task"], d["language"], d["duration"]) == ("transcribe", "english", 4.568)
    seg = d["segments"][0]
    assert list(seg)[:10] == ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
                              "no_speech_prob"]
    assert (seg["seek"], seg["avg_logprob"], seg["compression_ratio"], seg["no_speech_prob"]) == (0, -0.2123, 1.2346, 0.0123)
    assert d["segments"][1]["seek"] == 175 and d["segments"][1]["end"] == 3.2
    assert seg["speaker"] == "SPEAKER_00"
    assert seg["words"] == [{"word": " Hello", "start": 0.0, "end": 0.6, "probability": 0.9877, "speaker": "SPEAKER_00"},
                            {"word": " there.", "start": 0.6, "end": 1.5, "probability": 0.9, "speaker": "SPEAKER_00"}]
    assert seg["features"] == {"rms_dbfs": -23.01, "f0_hz": {"median": 201.3, "min": 180.0, "max": 230.0}, "voiced_fraction": 0.812,
                               "spectral_centroid_hz": 1500.0, "spectral_rolloff_hz": 3000.1,
                               "mfcc_mean": [round(i / 3, 3) for i in range(13)]}
    assert d["segments"][1]["features"]["f0_hz"] == {"median": None, "min": None, "max": None}
    assert "features" not in d["segments"][2]
    assert d["words"][0] == {"word": " Hello", "start": 0.0, "end": 0.6, "speaker": "SPEAKER_00"}
    assert [w["word"] for w in d["words"]] == [" Hello", " there.", " Hi", " Again."]
    assert d["speakers"] == [{"id": "SPEAKER_00", "total_speech_s": 1.5, "segments": 1},
                             {"id": "SPEAKER_01", "total_speech_s": 2.15, "segments": 2}]
    assert d["turns"] == [{"speaker": "SPEAKER_00", "start": 0.0, "end": 1.5}, {"speaker": "SPEAKER_01", "start": 1.75, "end": 4.0}]
    assert d["timings"] == [{"stage": "decode", "seconds": 0.123, "rtf": 0.027}, {"stage": "transcribe", "seconds": 1.0, "rtf": 0.2189}]
    json.dumps(d)  # plain JSON types only


def test_verbose_json_without_words_speakers_or_segments() -> None:
    d = to_verbose_json(_result(diarized=False), words=False)
    assert "words" not in d and "speakers" not in d and "turns" not in d
    assert all("words" not in s and "speaker" not in s for s in d["segments"])
    only_words = to_verbose_json(_result(diarized=False), words=True, segments=False)
    assert "segments" not in only_words and len(only_words["words"]) == 4
    assert "speaker" not in only_words["words"][0]


def test_the_openai_client_types_read_our_verbose_json() -> None:
    parsed = TranscriptionVerbose.model_validate(to_verbose_json(_result(), words=True))
    assert parsed.language == "english" and parsed.duration == pytest.approx(4.568)
    assert parsed.text == _result().text
    assert parsed.segments is not None and [s.id for s in parsed.segments] == [0, 1, 2]
    assert parsed.segments[1].start == 1.75 and parsed.segments[1].tokens == [] and parsed.segments[1].temperature == 0.0
    assert parsed.words is not None and [(w.word, w.start, w.end) for w in parsed.words][-1] == (" Again.", 3.3, 4.0)
    # the additions survive as extra fields of OpenAI's (permissive) models
    assert parsed.segments[0].model_extra is not None and parsed.segments[0].model_extra["speaker"] == "SPEAKER_00"


def test_round_trip() -> None:
    original = _result()
    back = result_from_verbose_json(json.loads(json.dumps(to_verbose_json(original, words=True))))
    assert to_verbose_json(back, words=True) == to_verbose_json(original, words=True)
    assert back.language == "en"
    assert back.segments[0].words[0] == BatchWord(" Hello", 0.0, 0.6, 0.9877, "SPEAKER_00")
    assert back.segments[0].features is not None and back.segments[0].features.f0_median_hz == 201.3
    assert back.segments[1].features is not None and back.segments[1].features.f0_median_hz is None
    assert back.turns == original.turns and back.speakers == original.speakers
    assert back.timings[1] == original.timings[1]
    # the same result without rounding in play renders the same in every text format
    for fmt in ("text", "srt", "vtt", "json"):
        assert render(back, fmt) == render(original, fmt)


def test_inverse_hands_top_level_words_to_segments_by_time() -> None:
    d = to_verbose_json(_result(diarized=False), words=True)
    for s in d["segments"]:
        del s["words"]  # OpenAI's own shape: words only at the top level
    back = result_from_verbose_json(d)
    assert [[w.word for w in s.words] for s in back.segments] == [[" Hello", " there."], [" Hi"], [" Again."]]
    assert back.segments[0].words[0].probability == 0.0  # OpenAI gives none


def test_inverse_refuses_what_is_not_verbose_json() -> None:
    with pytest.raises(UsageError, match="not a verbose_json"):
        result_from_verbose_json({"text": "only json"})
    with pytest.raises(UsageError):
        result_from_verbose_json({"language": "en", "duration": "long", "text": ""})
    with pytest.raises(UsageError):
        result_from_verbose_json({"language": "en", "duration": 1, "text": "", "segments": [{"id": 0}]})


# --------------------------------------------------------------------------- render, languages


@pytest.mark.parametrize("fmt,kind,media", [
    ("json", dict, "application/json"),
    ("verbose_json", dict, "application/json"),
    ("text", str, "text/plain; charset=utf-8"),
    ("srt", str, "text/plain; charset=utf-8"),
    ("vtt", str, "text/vtt; charset=utf-8"),
])
def test_render_each_format(fmt: str, kind: type, media: str) -> None:
    body, media_type = render(_result(), fmt, words=True)
    assert isinstance(body, kind) and media_type == media
    assert set(RESPONSE_FORMATS) == set(MEDIA_TYPES)


def test_render_words_flag_and_unknown_format() -> None:
    assert "words" in render(_result(), "verbose_json", words=True)[0]
    assert "words" not in render(_result(), "verbose_json")[0]
    with pytest.raises(UsageError, match="response_format"):
        render(_result(), "txt")


def test_language_names_come_from_whisper_without_importing_torch() -> None:
    formats._whisper_languages.cache_clear()
    had_torch = "torch" in sys.modules
    assert language_name("en") == "english" and language_name("KO") == "korean" and language_name("yue") == "cantonese"
    assert language_name("xx") == "xx"
    assert language_code("english") == "en" and language_code("Castilian") == "es" and language_code("ko") == "ko"
    assert language_code("klingon") == "klingon"
    if not had_torch:
        assert "torch" not in sys.modules


def test_without_openai_whisper_languages_stay_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    formats._whisper_languages.cache_clear()
    monkeypatch.delitem(sys.modules, "whisper.tokenizer", raising=False)
    monkeypatch.setattr(formats.importlib.util, "find_spec", lambda name: None)
    try:
        assert language_name("en") == "en" and language_code("en") == "en"
        assert to_verbose_json(EMPTY, words=False)["language"] == "en"
    finally:
        formats._whisper_languages.cache_clear()


def test_the_official_openai_client_reads_every_format() -> None:
    """``client.audio.transcriptions.create`` against bodies and media types from :func:`render`
    (an httpx2 MockTransport stands in for the server's route)."""
    import httpx2
    import openai

    asked: list[tuple[str, bool]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        form = request.content
        fmt = next((f for f in ("verbose_json", "json", "text", "srt", "vtt")
                   if b'name="response_format"\r\n\r\n' + f.encode() + b"\r\n" in form), "json")  # OpenAI's default
        words = b'name="timestamp_granularities[]"\r\n\r\nword\r\n' in form
        asked.append((fmt, words))
        body, media_type = render(_result(), fmt, words=words)
        content = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
        return httpx2.Response(200, content=content, headers={"content-type": media_type})

    client = openai.OpenAI(api_key="unused", base_url="http://asr.test/v1", http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    create = client.audio.transcriptions.create
    assert create(file=("a.wav", b"RIFF"), model="whisper-1").text == _result().text  # json is the default
    assert create(file=("a.wav", b"RIFF"), model="whisper-1", response_format="text") == to_text(_result())
    assert create(file=("a.wav", b"RIFF"), model="whisper-1", response_format="srt") == to_srt(_result())
    assert create(file=("a.wav", b"RIFF"), model="whisper-1", response_format="vtt") == to_vtt(_result())
    verbose = create(file=("a.wav", b"RIFF"), model="whisper-1", response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert isinstance(verbose, TranscriptionVerbose)
    assert verbose.language == "english" and verbose.words is not None and len(verbose.words) == 4
    assert verbose.segments is not None and len(verbose.segments) == 3
    assert asked == [("json", False), ("text", False), ("srt", False), ("vtt", False), ("verbose_json", True)]
