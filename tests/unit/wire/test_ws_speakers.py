"""The WebSocket adapter's speaker messages: ``enroll``, ``speakers`` on ``start``, ``enrolled``, and
the ``speaker`` of a ``final``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_ws_session import adapter, start
from whisper_streaming.core.results import FinalResult
from whisper_streaming.core.speakers import SPEAKER, SpeakerMatch, VoicePrint
from whisper_streaming.errors import RemoteProtocolError
from whisper_streaming.pipeline.commands import BeginStream, SetOptions, SpeakerEnrolled


def test_an_enroll_message_opens_a_stream_that_enrols_its_name() -> None:
    commands = adapter().on_text(json.dumps({"type": "enroll", "name": "alice", "user": "u"}))
    pairs = dict(next(c for c in commands if isinstance(c, SetOptions)).pairs)
    assert pairs["enroll"] == "alice" and pairs["speakers"] == ""
    assert isinstance(commands[-1], BeginStream)


@pytest.mark.parametrize(("value", "wire"), [("auto", "auto"), ("off", "off"), (["alice", "bob"], "alice,bob"), (None, "")])
def test_start_speakers_travel_as_the_speakers_option(value: object, wire: str) -> None:
    fields = {} if value is None else {"speakers": value}
    commands = adapter().on_text(start(**fields))
    assert dict(next(c for c in commands if isinstance(c, SetOptions)).pairs)["speakers"] == wire
    assert "enroll" not in dict(next(c for c in commands if isinstance(c, SetOptions)).pairs)


@pytest.mark.parametrize("message", [{"type": "enroll"}, {"type": "enroll", "name": 3}, {"type": "start", "speakers": 5},
                                     {"type": "start", "speakers": {"a": 1}}])
def test_malformed_speaker_fields_are_bad_messages(message: dict) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        adapter().on_text(json.dumps(message))
    assert err.value.reason == "BAD_MESSAGE"


def test_enrolled_and_a_labelled_final_render() -> None:
    a = adapter()
    voice = VoicePrint.from_array(np.ones(8), 4.2)
    assert a.render(SpeakerEnrolled(0, "alice", 4.21, voice)) == [{"type": "enrolled", "name": "alice", "speech": 4.21}]
    final = FinalResult(1.0, 2.0, "hi", 1, "en", None, {SPEAKER: SpeakerMatch("alice", 0.8123)})
    assert a.render(final)[0] | {} == {"type": "final", "start": 1.0, "end": 2.0, "text": "hi", "language": "en",
                                        "speaker": "alice", "speaker_score": 0.812}
    plain = a.render(FinalResult(1.0, 2.0, "hi", 1, "en", None, {}))[0]
    assert "speaker" not in plain
