"""The WebSocket wire adapter (sans-IO, no loop): JSON/binary messages <-> session commands, outputs -> JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from whisper_streaming.analyzers.sentiment import Sentiment
from whisper_streaming.core.options import StreamOptions
from whisper_streaming.core.results import FinalResult, PartialHypothesis
from whisper_streaming.errors import ErrorReason, RemoteProtocolError
from whisper_streaming.pipeline.commands import (
    AudioChunk,
    BeginStream,
    FinishStream,
    Identify,
    OptionsSet,
    SessionFailed,
    SetOptions,
    StreamFinished,
    Welcomed,
)
from whisper_streaming.pipeline.session import Deliver, Session, SessionOptions
from whisper_streaming.wire.ws_session import FinishMessage, StartMessage, WsAdapter, error_message, parse_message, to_text


def adapter(**defaults: object) -> WsAdapter:
    return WsAdapter(StreamOptions(**defaults), None, "w1")  # type: ignore[arg-type]


def start(**fields: object) -> str:
    return json.dumps({"type": "start", **fields})


# --------------------------------------------------------------------------- parsing


def test_parse_start_and_finish() -> None:
    assert parse_message('{"type": "finish"}') == FinishMessage()
    got = parse_message(start(user="ann", sample_rate=48000, encoding="pcm_s16le", language=None, partials=True, sentiment=False, extra=1))
    assert got == StartMessage(user="ann", sample_rate=48000, encoding="pcm_s16le", language=None, partials=True, sentiment=False)
    assert parse_message('{"type": "start"}') == StartMessage()


def test_the_token_is_kept_but_never_shown() -> None:
    got = parse_message(start(token="s3cret"))
    assert isinstance(got, StartMessage) and got.token == "s3cret"
    assert "s3cret" not in repr(got)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("not json", ErrorReason.BAD_MESSAGE),
        ("[1, 2]", ErrorReason.BAD_MESSAGE),
        ('"start"', ErrorReason.BAD_MESSAGE),
        ('{"kind": "start"}', ErrorReason.BAD_MESSAGE),
        ('{"type": 3}', ErrorReason.BAD_MESSAGE),
        ('{"type": "audio"}', ErrorReason.UNKNOWN_MESSAGE),
        ('{"type": "start", "sample_rate": "16000"}', ErrorReason.BAD_MESSAGE),
        ('{"type": "start", "sample_rate": true}', ErrorReason.BAD_MESSAGE),
        ('{"type": "start", "sample_rate": 16000.5}', ErrorReason.BAD_MESSAGE),
        ('{"type": "start", "partials": 1}', ErrorReason.BAD_MESSAGE),
        ('{"type": "start", "user": 7}', ErrorReason.BAD_MESSAGE),
        ('{"type": "start", "language": ["en"]}', ErrorReason.BAD_MESSAGE),
        ("[" * 100000, ErrorReason.BAD_MESSAGE),  # too deep for the parser: still only BAD_MESSAGE
    ],
)
def test_malformed_messages_are_protocol_errors(text: str, reason: ErrorReason) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(text)
    assert info.value.reason is reason


# --------------------------------------------------------------------------- start -> commands


def test_first_start_identifies_sets_every_option_and_begins() -> None:
    a = adapter()
    commands = a.on_text(start(user="ann", partials=True))
    assert commands == [
        Identify("ann"),
        SetOptions((("sample_rate", "16000"), ("encoding", "pcm_s16le"), ("language", "auto"), ("partials", "1"), ("sentiment", "0"), ("speakers", ""))),
        BeginStream(),
    ]


def test_absent_fields_take_the_server_defaults_not_the_previous_start() -> None:
    a = WsAdapter(StreamOptions(sentiment=True), "en", "w9")
    first = a.on_text(start(language="de", sentiment=False))
    assert first[0] == Identify("w9")  # no user: the connection id
    assert dict(first[1].pairs) == {"sample_rate": "16000", "encoding": "pcm_s16le", "language": "de", "partials": "0", "sentiment": "0", "speakers": ""}
    a.on_text('{"type": "finish"}')
    second = a.on_text(start())
    assert not any(isinstance(c, Identify) for c in second)
    assert dict(second[0].pairs) == {"sample_rate": "16000", "encoding": "pcm_s16le", "language": "en", "partials": "0", "sentiment": "1", "speakers": ""}


def test_a_later_start_may_not_change_the_user() -> None:
    a = adapter()
    a.on_text(start(user="ann"))
    a.on_text('{"type": "finish"}')
    assert a.on_text(start(user="ann"))[-1] == BeginStream()
    with pytest.raises(RemoteProtocolError) as info:
        a.on_text(start(user="bob"))
    assert info.value.reason is ErrorReason.DUPLICATE_USER


@pytest.mark.parametrize("user", ["", "x" * 65, "a\nb", "bidi\u202e"])
def test_bad_user_ids(user: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        adapter().on_text(start(user=user))
    assert info.value.reason is ErrorReason.BAD_USER_ID


@pytest.mark.parametrize("fields", [{"sample_rate": 7999}, {"sample_rate": 192001}, {"sample_rate": 44100, "encoding": "mulaw"}])
def test_rates_outside_the_range_and_g711_off_8k_are_bad_options(fields: dict) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        adapter().on_text(start(**fields))
    assert info.value.reason is ErrorReason.BAD_OPTION


def test_tokens_go_with_the_options_from_the_start_or_the_url() -> None:
    a = WsAdapter(StreamOptions(), None, "w1", query_token="from-url")
    assert ("token", "from-url") in a.on_text(start())[1].pairs
    a.on_text('{"type": "finish"}')
    assert ("token", "mine") in a.on_text(start(token="mine"))[0].pairs
    assert not any(k == "token" for k, _ in adapter().on_text(start())[1].pairs)


# --------------------------------------------------------------------------- audio


def test_odd_byte_counts_wait_for_the_next_frame() -> None:
    a = adapter()
    a.on_text(start())
    assert a.on_audio(b"\x01") == []
    assert a.on_audio(b"\x02\x03") == [AudioChunk(b"\x01\x02")]
    assert a.on_audio(b"\x04\x05\x06") == [AudioChunk(b"\x03\x04\x05\x06")]
    assert a.on_audio(b"") == []
    assert a.on_audio(b"\x07") == []
    assert a.finish() == [FinishStream()]  # the half sample is dropped
    a.on_text(start())
    assert a.on_audio(b"\x08\x09") == [AudioChunk(b"\x08\x09")]  # nothing left over from the last stream


def test_audio_before_start_goes_to_the_session_as_is() -> None:
    assert adapter().on_audio(b"\x01") == [AudioChunk(b"\x01")]


def test_g711_bytes_pass_whole() -> None:
    a = adapter()
    a.on_text(start(sample_rate=8000, encoding="mulaw"))
    assert a.on_audio(b"\xff") == [AudioChunk(b"\xff")]


def test_a_browser_rate_is_resampled_to_16k_and_the_tail_flushed_at_finish() -> None:
    a = adapter()
    commands = a.on_text(start(sample_rate=48000))
    assert ("sample_rate", "16000") in commands[-2].pairs  # the session gets 16 kHz
    t = np.arange(48000) / 48000
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    out = b""
    for i in range(0, len(pcm), 4801):  # odd-sized frames
        out += b"".join(c.data for c in a.on_audio(pcm[i : i + 4801]))
    tail = a.finish()
    assert tail[-1] == FinishStream()
    out += b"".join(c.data for c in tail[:-1])
    samples = np.frombuffer(out, dtype="<i2").astype(np.float64) / 32767
    assert abs(len(samples) - 16000) <= 2  # one second at 16 kHz
    ref = 0.3 * np.sin(2 * np.pi * 440 * np.arange(len(samples)) / 16000)
    assert np.max(np.abs(samples[200:-200] - ref[200:-200])) < 0.01  # the same tone, not dropped samples


# --------------------------------------------------------------------------- outputs -> JSON


def test_render_started_with_effective_options_and_the_clients_rate() -> None:
    a = adapter()
    a.on_text(start(sample_rate=48000, partials=True))
    got = a.render(OptionsSet((("sample_rate", "16000"), ("encoding", "pcm_s16le"), ("language", "auto"), ("partials", "0"),
                               ("sentiment", "0"))))
    assert got == [{"type": "started", "options": {"sample_rate": 48000, "encoding": "pcm_s16le", "language": "auto",
                                                   "partials": False, "sentiment": False}}]
    assert a.render(Welcomed("Welcome!")) == []


def test_render_results_summary_and_finished() -> None:
    a = adapter()
    a.on_text(start(sentiment=True))
    assert a.render(PartialHypothesis(0.48, 1.5, "and so", "my fellow")) == [
        {"type": "partial", "start": 0.48, "end": 1.5, "stable": "and so", "unstable": "my fellow"}]
    r1 = FinalResult(0.4812, 7.6649, "And so my fellow Americans.", 0, "en", annotations={"sentiment": Sentiment("positive", 0.9123)})
    r2 = FinalResult(8.0, 9.0, "Bad.", 0, "", annotations={"sentiment": Sentiment("negative", 0.5)})
    assert a.render(r1) == [{"type": "final", "start": 0.481, "end": 7.665, "text": "And so my fellow Americans.", "language": "en",
                             "sentiment": {"label": "positive", "score": 0.912}}]
    assert a.render(r2)[0]["language"] is None
    assert a.render(StreamFinished(0, frozenset({"sentiment"}))) == [
        {"type": "summary", "results": 2, "sentiment": {"positive": 1, "negative": 1, "neutral": 0, "unsupported": 0, "mean_score": 0.706}},
        {"type": "finished"},
    ]
    # the next stream starts a new tally; without sentiment the summary has only the count
    assert a.render(FinalResult(0.0, 1.0, "x", 1)) == [{"type": "final", "start": 0.0, "end": 1.0, "text": "x", "language": None}]
    assert a.render(StreamFinished(1)) == [{"type": "summary", "results": 1}, {"type": "finished"}]


def test_render_unsupported_sentiment_and_errors() -> None:
    a = adapter()
    got = a.render(FinalResult(0.0, 1.0, "annyeong", 0, "ko", annotations={"sentiment": Sentiment("unsupported", None, "ko")}))
    assert got[0]["sentiment"] == {"label": "unsupported", "score": None, "language": "ko"}
    assert a.render(SessionFailed(ErrorReason.SERVER_TOO_BUSY)) == [{"type": "error", "reason": "SERVER_TOO_BUSY"}]
    assert error_message(ErrorReason.BAD_ORIGIN) == {"type": "error", "reason": "BAD_ORIGIN"}
    assert json.loads(to_text({"type": "final", "text": "Grüße"})) == {"type": "final", "text": "Grüße"}
    assert "Grüße" in to_text({"text": "Grüße"})  # UTF-8 kept, not \\u escapes


# --------------------------------------------------------------------------- with a real session (no loop)


def test_a_session_driven_by_the_adapter_refuses_a_bad_language_and_accepts_a_good_one() -> None:
    """The options registry validates what the adapter maps (BAD_OPTION), the policy gives the effective value."""
    session = Session(SessionOptions(option_policy={"partials": lambda requested: False}))
    a = adapter()
    outputs = []
    for command in a.on_text(start(language="en", partials=True)):
        outputs += [x.output for x in session.handle(command) if isinstance(x, Deliver)]
    rendered = [m for o in outputs for m in a.render(o)]
    assert rendered == [{"type": "started", "options": {"sample_rate": 16000, "encoding": "pcm_s16le", "language": "en",
                                                        "partials": False, "sentiment": False, "speakers": None}}]
    bad = Session(SessionOptions())
    b = adapter()
    actions = [x for c in b.on_text(start(language="klingon")) for x in bad.handle(c)]
    failed = [x.output for x in actions if isinstance(x, Deliver) and isinstance(x.output, SessionFailed)]
    assert [b.render(f) for f in failed] == [[{"type": "error", "reason": "BAD_OPTION"}]]
