"""Every sink's result JSON carries the speaker label when the result has one, and nothing new otherwise."""

from __future__ import annotations

from whisper_streaming.core.results import FinalResult
from whisper_streaming.core.speakers import SPEAKER, SpeakerMatch
from whisper_streaming.sinks.base import result_json


def test_speaker_fields_only_when_labelled() -> None:
    plain = result_json(FinalResult(1.0, 2.0, "hi", 0, "en", None, {}))
    assert set(plain) == {"start_s", "end_s", "text", "language", "sentiment", "score"}
    labelled = result_json(FinalResult(1.0, 2.0, "hi", 0, "en", None, {SPEAKER: SpeakerMatch("alice", 0.81234)}))
    assert labelled["speaker"] == "alice" and labelled["speaker_score"] == 0.812
    assert {k: v for k, v in labelled.items() if not k.startswith("speaker")} == plain
