"""The session without any wire format: commands in, outputs out (tests/unit/pipeline/test_session.py
drives it through the V1.0 adapter)."""

from __future__ import annotations

import numpy as np

from whisper_streaming.core.options import StreamOptions
from whisper_streaming.core.results import FinalResult
from whisper_streaming.core.transcript import Transcript, TranscriptSegment
from whisper_streaming.errors import ErrorReason
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
from whisper_streaming.pipeline.session import Close, Deliver, Session, SessionOptions, StreamAudio, StreamEnded, StreamStarted, Transcribe
from whisper_streaming.pipeline.vad import VadSegmenter

LOUD = (np.sin(np.arange(480) / 3) * 9000).astype("<i2").tobytes()  # 30 ms
QUIET = bytes(960)


def speech_session(options: SessionOptions | None = None) -> Session:
    """A session whose VAD calls every frame with a non-zero sample speech."""
    return Session(options, segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=lambda frame, rate: any(frame)))


def deliveries(actions: list) -> list:
    return [a.output for a in actions if isinstance(a, Deliver)]


def test_a_stream_from_commands_to_final_results_with_the_whole_transcript() -> None:
    s = speech_session()
    assert deliveries(s.handle(Identify("alice"))) == [Welcomed("Welcome!")]
    assert s.handle(BeginStream()) == [StreamStarted(0, "alice", 16000)]
    actions = []
    for chunk in [LOUD] * 20 + [QUIET] * 40:
        actions += s.handle(AudioChunk(chunk))
    (t,) = [a for a in actions if isinstance(a, Transcribe)]
    assert all(isinstance(a, (StreamAudio, Transcribe)) or type(a).__name__ in ("Speculate", "CancelSpeculation") for a in actions)
    transcript = Transcript("hello there", "en", 0.99, (TranscriptSegment(0.0, 0.6, "hello there", -0.2, 0.01, 1.1),), 0.9)
    (result,) = deliveries(s.transcription_done(t.ticket, transcript.text, {"sentiment": "not asked for"}, "en", 0.99, transcript=transcript))
    assert isinstance(result, FinalResult)
    assert (result.text, result.stream_index, result.language) == ("hello there", 0, "en")
    assert result.transcript is transcript and result.transcript.segments[0].end_s == 0.6  # segments reach the doors
    assert result.annotations == {}  # the stream asked for no analysis
    assert 0.0 <= result.start_s < result.end_s <= 60 * 0.03
    out = s.handle(FinishStream())
    assert StreamEnded(0) in out and deliveries(out) == [StreamFinished(0, frozenset())]


def test_annotations_the_stream_asked_for_reach_the_result() -> None:
    s = speech_session(SessionOptions(stream_defaults=StreamOptions(sentiment=True)))
    s.handle(Identify("bob"))
    s.handle(BeginStream())
    actions = [a for chunk in [LOUD] * 20 + [QUIET] * 40 for a in s.handle(AudioChunk(chunk))]
    (t,) = [a for a in actions if isinstance(a, Transcribe)]
    assert t.analyses == frozenset({"sentiment"})
    (result,) = deliveries(s.transcription_done(t.ticket, "fine", {"sentiment": "POS", "speaker": "x"}, "en"))
    assert result.annotations == {"sentiment": "POS"}
    assert deliveries(s.handle(FinishStream())) == [StreamFinished(0, frozenset({"sentiment"}))]


def test_options_and_errors_are_outputs_not_packets() -> None:
    s = speech_session()
    s.handle(Identify("carol"))
    assert deliveries(s.handle(SetOptions((("sentiment", "1"), ("unknown", "x"))))) == [OptionsSet((("sentiment", "1"),))]
    failed = s.handle(AudioChunk(LOUD))  # no stream open
    assert deliveries(failed) == [SessionFailed(ErrorReason.AUDIO_BEFORE_BEGIN)]
    assert isinstance(failed[-1], Close) and failed[-1].reason.startswith("AUDIO_BEFORE_BEGIN")
