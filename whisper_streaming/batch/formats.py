"""A :class:`~whisper_streaming.core.batch.BatchResult` in the response formats of OpenAI's
``/v1/audio/transcriptions`` (pure: strings and dicts, no I/O).

=================  ==============================================  ===========================
format             body                                            media type
=================  ==============================================  ===========================
``json``           ``{"text": ...}``                               ``application/json``
``text``           the text (one line per speaker turn when        ``text/plain; charset=utf-8``
                   diarized, ``[SPEAKER_00] `` before it)
``srt``            SubRip cues, ``00:00:01,500``, numbered from 1  ``text/plain; charset=utf-8``
``verbose_json``   OpenAI's verbose object plus our additions      ``application/json``
``vtt``            WebVTT, ``WEBVTT`` header, ``00:00:01.500``     ``text/vtt; charset=utf-8``
=================  ==============================================  ===========================

The shapes follow OpenAI's API reference (the ``openai`` package's
``openai.types.audio.TranscriptionVerbose``, ``TranscriptionSegment``, ``TranscriptionWord``):
``verbose_json`` is ``{"task": "transcribe", "language": "english", "duration", "text",
"segments": [{"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
"compression_ratio", "no_speech_prob"}], "words": [{"word", "start", "end"}]}``; ``language``
is Whisper's lower-case English name of the language, as OpenAI answers it (Whisper's own table,
``whisper.tokenizer.LANGUAGES``).  Media types: OpenAI answers ``srt`` (which has no registered
type) and ``text`` as ``text/plain; charset=utf-8`` (a captured response in
morioka/tiny-openai-whisper-api issue 7); ``vtt`` gets its registered ``text/vtt``, as in speaches.

Our additions, present only when there is something to show: per segment ``speaker``,
``words`` (``{"word", "start", "end", "probability"}`` and ``speaker`` when diarized) and
``features`` (``{"rms_dbfs", "f0_hz": {"median", "min", "max"}, "voiced_fraction",
"spectral_centroid_hz", "spectral_rolloff_hz", "mfcc_mean": [13 floats]}``); top level
``speakers`` (``[{"id", "total_speech_s", "segments"}]``), ``turns`` (``[{"speaker", "start",
"end"}]``, who spoke when) and ``timings`` (``[{"stage", "seconds", "rtf"}]``).  Times are
rounded to milliseconds, probabilities to 4 decimals, frequencies to 0.1 Hz, levels to 0.01 dB.

Not kept by :class:`BatchSegment` and so filled with fixed values: ``tokens`` (``[]``),
``temperature`` (``0.0``) and ``seek`` (the segment's start in Whisper's 10 ms frames, not the
offset of the decoding window).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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

__all__ = [
    "RESPONSE_FORMATS",
    "MEDIA_TYPES",
    "language_name",
    "language_code",
    "to_json",
    "to_verbose_json",
    "to_text",
    "to_srt",
    "to_vtt",
    "render",
    "result_from_verbose_json",
    "srt_timestamp",
    "vtt_timestamp",
]

log = logging.getLogger(__name__)

RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")
"""OpenAI's ``response_format`` values (``json`` is its default)."""

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
"""The ``Content-Type`` of each format's body."""

_FRAMES_PER_S = 100
"""Whisper's mel frames per second (hop of 160 samples at 16 kHz): the unit of ``seek``."""


# --------------------------------------------------------------------------- language names


@functools.lru_cache(maxsize=1)
def _whisper_languages() -> tuple[dict[str, str], dict[str, str]]:
    """Whisper's ``LANGUAGES`` (code -> name) and ``TO_LANGUAGE_CODE`` (name or alias -> code).

    From ``whisper/tokenizer.py`` of openai-whisper (requirements.txt installs it), loaded by
    file so that the ``whisper`` package's ``__init__`` (which imports torch: seconds) does not
    run; the module imported normally when it already is.  Empty tables when openai-whisper is
    not installed: languages then stay codes.
    """
    module = sys.modules.get("whisper.tokenizer")
    if module is None:
        spec = importlib.util.find_spec("whisper")
        locations = list(spec.submodule_search_locations or ()) if spec is not None else []
        path = Path(locations[0]) / "tokenizer.py" if locations else None
        if path is None or not path.is_file():
            log.warning("openai-whisper is not installed: languages are shown as codes, not names")
            return {}, {}
        file_spec = importlib.util.spec_from_file_location("_whisper_tokenizer_by_file", path)
        assert file_spec is not None and file_spec.loader is not None
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[file_spec.name] = module  # as importlib's recipe for importing a source file directly
        file_spec.loader.exec_module(module)
    return dict(module.LANGUAGES), dict(module.TO_LANGUAGE_CODE)


def language_name(code: str) -> str:
    """A Whisper language code (``"en"``) -> the name OpenAI answers (``"english"``); a code
    Whisper does not know, or any code without openai-whisper installed, is returned as it is."""
    return _whisper_languages()[0].get(code.lower(), code)


def language_code(name: str) -> str:
    """The inverse of :func:`language_name`: ``"english"`` (or an alias such as ``"castilian"``,
    or a code such as ``"en"``) -> ``"en"``; anything unknown is returned lower-cased."""
    names, codes = _whisper_languages()
    key = name.strip().lower()
    if key in names:
        return key
    return codes.get(key, key)


# --------------------------------------------------------------------------- JSON


def _t(seconds: float) -> float:
    return round(float(seconds), 3)


def _opt(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _word_dict(word: BatchWord, *, probability: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"word": word.word, "start": _t(word.start_s), "end": _t(word.end_s)}
    if probability:
        d["probability"] = round(float(word.probability), 4)
    if word.speaker is not None:
        d["speaker"] = word.speaker
    return d


def _features_dict(f: AcousticFeatures) -> dict[str, Any]:
    return {
        "rms_dbfs": round(float(f.rms_dbfs), 2),
        "f0_hz": {"median": _opt(f.f0_median_hz, 1), "min": _opt(f.f0_min_hz, 1), "max": _opt(f.f0_max_hz, 1)},
        "voiced_fraction": round(float(f.voiced_fraction), 3),
        "spectral_centroid_hz": round(float(f.spectral_centroid_hz), 1),
        "spectral_rolloff_hz": round(float(f.spectral_rolloff_hz), 1),
        "mfcc_mean": [round(float(v), 3) for v in f.mfcc_mean],
    }


def _segment_dict(seg: BatchSegment, *, words: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": seg.id,
        "seek": max(0, round(seg.start_s * _FRAMES_PER_S)),
        "start": _t(seg.start_s),
        "end": _t(seg.end_s),
        "text": seg.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(float(seg.avg_logprob), 4),
        "compression_ratio": round(float(seg.compression_ratio), 4),
        "no_speech_prob": round(float(seg.no_speech_prob), 4),
    }
    if seg.speaker is not None:
        d["speaker"] = seg.speaker
    if words:
        d["words"] = [_word_dict(w, probability=True) for w in seg.words]
    if seg.features is not None:
        d["features"] = _features_dict(seg.features)
    return d


def to_json(result: BatchResult) -> dict[str, Any]:
    """OpenAI's ``json`` format: ``{"text": <the whole text>}``."""
    return {"text": result.text}


def to_verbose_json(result: BatchResult, *, words: bool, segments: bool = True) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` object with our additions (see the module docstring).

    ``words``: the top-level ``words`` list (and each segment's ``words``), as with
    ``timestamp_granularities[]=word``; ``segments``: the ``segments`` list (OpenAI leaves it
    out when only ``word`` granularity is asked for).  Key order follows OpenAI's answers.
    """
    out: dict[str, Any] = {
        "task": "transcribe",
        "language": language_name(result.language),
        "duration": _t(result.duration_s),
        "text": result.text,
    }
    if segments:
        out["segments"] = [_segment_dict(s, words=words) for s in result.segments]
    if words:
        out["words"] = [_word_dict(w, probability=False) for s in result.segments for w in s.words]
    if result.speakers:
        out["speakers"] = [{"id": s.id, "total_speech_s": _t(s.total_speech_s), "segments": s.segments} for s in result.speakers]
    if result.turns:
        out["turns"] = [{"speaker": t.speaker, "start": _t(t.start_s), "end": _t(t.end_s)} for t in result.turns]
    if result.timings:
        out["timings"] = [{"stage": t.stage, "seconds": _t(t.seconds), "rtf": round(float(t.rtf), 4)} for t in result.timings]
    return out


# --------------------------------------------------------------------------- text, SRT, WebVTT


def _split_ms(seconds: float) -> tuple[int, int, int, int]:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return hours, minutes, secs, ms


def srt_timestamp(seconds: float) -> str:
    """SubRip time: ``HH:MM:SS,mmm`` (hours always, at least two digits; negative -> 0)."""
    h, m, s, ms = _split_ms(seconds)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def vtt_timestamp(seconds: float) -> str:
    """WebVTT time: ``HH:MM:SS.mmm`` (hours always, at least two digits; negative -> 0)."""
    h, m, s, ms = _split_ms(seconds)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _cue_text(seg: BatchSegment) -> str:
    """A segment's text on one line (a blank line would end the cue; ``-->`` would start a
    timing line), with the speaker in front when diarized; empty when there is no text."""
    text = " ".join(seg.text.split()).replace("-->", "->")
    if not text:
        return ""
    return f"[{seg.speaker}] {text}" if seg.speaker is not None else text


def _vtt_escape(text: str) -> str:
    """WebVTT cue text must not hold a bare ``&``, ``<`` or ``>`` (W3C WebVTT, 4.2.2)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cues(result: BatchResult) -> list[tuple[float, float, str]]:
    cues = []
    for seg in result.segments:
        text = _cue_text(seg)
        if text:
            cues.append((seg.start_s, max(seg.start_s, seg.end_s), text))
    return cues


def to_text(result: BatchResult) -> str:
    """OpenAI's ``text`` format: the text and a newline (empty for no text).  When diarized
    (some segment has a speaker), one line per run of segments of the same speaker, prefixed
    ``[SPEAKER_00] ``."""
    if not any(seg.speaker is not None for seg in result.segments):
        text = result.text.strip()
        return text + "\n" if text else ""
    lines: list[tuple[str | None, list[str]]] = []
    for seg in result.segments:
        text = " ".join(seg.text.split())
        if not text:
            continue
        if lines and lines[-1][0] == seg.speaker:
            lines[-1][1].append(text)
        else:
            lines.append((seg.speaker, [text]))
    return "".join((f"[{speaker}] " if speaker is not None else "") + " ".join(parts) + "\n" for speaker, parts in lines)


def to_srt(result: BatchResult) -> str:
    """SubRip: ``1\\n00:00:00,000 --> 00:00:01,500\\n[SPEAKER_00] text\\n\\n`` per segment with
    text (cues numbered from 1 without gaps); empty for no segments."""
    return "".join(f"{i}\n{srt_timestamp(start)} --> {srt_timestamp(end)}\n{text}\n\n"
                   for i, (start, end, text) in enumerate(_cues(result), start=1))


def to_vtt(result: BatchResult) -> str:
    """WebVTT: ``WEBVTT\\n\\n`` then ``00:00:00.000 --> 00:00:01.500\\n[SPEAKER_00] text\\n\\n``
    per segment with text (``&``, ``<``, ``>`` escaped)."""
    return "WEBVTT\n\n" + "".join(f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n{_vtt_escape(text)}\n\n"
                                  for start, end, text in _cues(result))


def render(result: BatchResult, response_format: str, *, words: bool = False) -> tuple[str | dict[str, Any], str]:
    """The body of ``response_format`` (a dict for the JSON formats, else a string) and its
    media type (:data:`MEDIA_TYPES`).  ``words``: word timestamps in ``verbose_json``.

    Raises:
        UsageError: ``response_format`` is not one of :data:`RESPONSE_FORMATS`.
    """
    if response_format == "json":
        body: str | dict[str, Any] = to_json(result)
    elif response_format == "verbose_json":
        body = to_verbose_json(result, words=words)
    elif response_format == "text":
        body = to_text(result)
    elif response_format == "srt":
        body = to_srt(result)
    elif response_format == "vtt":
        body = to_vtt(result)
    else:
        raise UsageError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, not {response_format!r}")
    return body, MEDIA_TYPES[response_format]


# --------------------------------------------------------------------------- the inverse


def _word_from(d: Mapping[str, Any]) -> BatchWord:
    return BatchWord(word=str(d["word"]), start_s=float(d["start"]), end_s=float(d["end"]),
                     probability=float(d.get("probability", 0.0)), speaker=d.get("speaker"))


def _features_from(d: Mapping[str, Any]) -> AcousticFeatures:
    f0 = d.get("f0_hz") or {}
    return AcousticFeatures(
        rms_dbfs=float(d["rms_dbfs"]),
        f0_median_hz=_opt(f0.get("median"), 6),
        f0_min_hz=_opt(f0.get("min"), 6),
        f0_max_hz=_opt(f0.get("max"), 6),
        voiced_fraction=float(d["voiced_fraction"]),
        spectral_centroid_hz=float(d["spectral_centroid_hz"]),
        spectral_rolloff_hz=float(d["spectral_rolloff_hz"]),
        mfcc_mean=tuple(float(v) for v in d["mfcc_mean"]),
    )


def _segment_from(d: Mapping[str, Any], words: tuple[BatchWord, ...]) -> BatchSegment:
    features = d.get("features")
    return BatchSegment(
        id=int(d["id"]), start_s=float(d["start"]), end_s=float(d["end"]), text=str(d["text"]),
        avg_logprob=float(d.get("avg_logprob", 0.0)), no_speech_prob=float(d.get("no_speech_prob", 0.0)),
        compression_ratio=float(d.get("compression_ratio", 0.0)), words=words, speaker=d.get("speaker"),
        features=_features_from(features) if features is not None else None,
    )


def _words_by_segment(segments: list[Mapping[str, Any]], words: list[BatchWord]) -> list[tuple[BatchWord, ...]]:
    """Top-level words handed to the segment holding each word's midpoint (else the nearest)."""
    out: list[list[BatchWord]] = [[] for _ in segments]
    for word in words:
        mid = (word.start_s + word.end_s) / 2
        distance = [max(float(s["start"]) - mid, mid - float(s["end"]), 0.0) for s in segments]
        out[distance.index(min(distance))].append(word)
    return [tuple(ws) for ws in out]


def result_from_verbose_json(d: Mapping[str, Any]) -> BatchResult:
    """A :class:`BatchResult` from a ``verbose_json`` dict (ours, or OpenAI's): the inverse of
    :func:`to_verbose_json` up to its rounding (the fixed ``tokens``/``temperature``/``seek``
    are dropped).  The language name goes back to its code.  Segment words come from each
    segment's ``words``; when no segment has them, the top-level ``words`` are handed to the
    segments by time (and dropped when there are no segments).

    Raises:
        UsageError: ``d`` is not a verbose_json object (a field missing or of the wrong type).
    """
    try:
        raw_segments = list(d.get("segments") or [])
        if any("words" in s for s in raw_segments):
            seg_words = [tuple(_word_from(w) for w in s.get("words") or []) for s in raw_segments]
        elif raw_segments:
            seg_words = _words_by_segment(raw_segments, [_word_from(w) for w in d.get("words") or []])
        else:
            seg_words = []
        return BatchResult(
            language=language_code(str(d["language"])),
            duration_s=float(d["duration"]),
            text=str(d["text"]),
            segments=tuple(_segment_from(s, ws) for s, ws in zip(raw_segments, seg_words)),
            speakers=tuple(SpeakerSummary(id=str(s["id"]), total_speech_s=float(s["total_speech_s"]), segments=int(s["segments"]))
                           for s in d.get("speakers") or []),
            turns=tuple(SpeakerTurn(start_s=float(t["start"]), end_s=float(t["end"]), speaker=str(t["speaker"]))
                        for t in d.get("turns") or []),
            timings=tuple(StageTiming(stage=str(t["stage"]), seconds=float(t["seconds"]), rtf=float(t["rtf"]))
                          for t in d.get("timings") or []),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"not a verbose_json transcription: {type(exc).__name__}: {exc}") from exc
