"""ErrorReason: one list of reasons, its wire text, WebSocket close code and HTTP status."""

from __future__ import annotations

import pytest

from whisper_streaming.errors import ErrorReason, RemoteProtocolError


def test_wire_text_is_the_value_and_formats_as_it() -> None:
    assert ErrorReason.SERVER_TOO_BUSY == "SERVER_TOO_BUSY"
    assert f"{ErrorReason.TIMEOUT}: x" == "TIMEOUT: x" and str(ErrorReason.TIMEOUT) == "TIMEOUT"
    assert ErrorReason.ASR_FAILED.encode("ascii") == b"ASR_FAILED"
    assert all(r.value.isascii() and r.value.isupper() for r in ErrorReason)


@pytest.mark.parametrize(
    "reason,close_code,status,peer_fault",
    [
        (ErrorReason.SERVER_TOO_BUSY, 1013, 503, False),
        (ErrorReason.SHUTTING_DOWN, 1001, 503, False),
        (ErrorReason.TOO_MANY_CONNECTIONS, 1013, 429, False),
        (ErrorReason.ASR_FAILED, 1011, 500, False),
        (ErrorReason.BACKEND_UNAVAILABLE, 1013, 503, False),
        (ErrorReason.STREAM_TOO_LONG, 1009, 413, True),
        (ErrorReason.BAD_LENGTH, 1009, 413, True),
        (ErrorReason.AUDIO_BEFORE_BEGIN, 1008, 400, True),
        (ErrorReason.UNKNOWN_KIND, 1008, 400, True),
        (ErrorReason.UNAUTHORIZED, 1008, 401, True),
    ],
)
def test_each_reason_maps_to_a_close_code_and_status(reason: ErrorReason, close_code: int, status: int, peer_fault: bool) -> None:
    assert (reason.ws_close_code, reason.http_status, reason.peer_fault) == (close_code, status, peer_fault)


def test_protocol_errors_carry_a_member_and_refuse_unknown_reasons() -> None:
    exc = RemoteProtocolError("BAD_LENGTH", "length field is not hex")
    assert exc.reason is ErrorReason.BAD_LENGTH and str(exc) == "BAD_LENGTH: length field is not hex"
    with pytest.raises(ValueError):
        RemoteProtocolError("NOT_A_REASON")
