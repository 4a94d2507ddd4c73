"""A server with speakers turned off (``speakers.enabled: false``) answers ``enroll`` with an empty
value: the WebSocket ``started`` message and the client's ``decode_accepted`` must take it."""

from __future__ import annotations

from test_ws_session import adapter
from whisper_streaming.core.options import decode_accepted
from whisper_streaming.pipeline.commands import OptionsSet


def test_decode_accepted_keeps_a_refused_enroll_as_text() -> None:
    assert decode_accepted((("enroll", ""), ("speakers", "off"))) == {"enroll": "", "speakers": "off"}


def test_the_started_message_of_a_server_without_speakers_renders() -> None:
    messages = adapter().render(OptionsSet((("speakers", "off"), ("enroll", ""))))
    assert messages == [{"type": "started", "options": {"speakers": "off", "enroll": ""}}]
