"""AudioSocket sans-IO codec: framing, every error path, chunking, and a property test."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.wire import audiosocket as asock
from whisper_streaming.wire.audiosocket import (
    AudioFrame,
    AudioSocketDecoder,
    CallStarted,
    Dtmf,
    Hangup,
    Kind,
    RemoteError,
)
from whisper_streaming.errors import RemoteProtocolError, UsageError

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
PCM_20MS_8K = bytes(range(256)) + bytes(64)  # 320 bytes = 160 samples = 20 ms at 8 kHz


def call_bytes() -> bytes:
    return b"".join([
        asock.uuid_frame(CALL),
        asock.audio_frame(PCM_20MS_8K),
        asock.dtmf_frame("#"),
        asock.audio_frame(b"\x01\x00" * 320, 16000),
        asock.error_frame(asock.ASTERISK_ERROR_FRAME_FORWARDING),
        asock.hangup_frame(),
    ])


EXPECTED = [
    CallStarted(CALL),
    AudioFrame(PCM_20MS_8K, 8000),
    Dtmf("#"),
    AudioFrame(b"\x01\x00" * 320, 16000),
    RemoteError(2, b"\x02"),
    Hangup(),
]


def decode_all(data: bytes, chunk: int | None = None, **kwargs: int) -> list[asock.Event]:
    dec = AudioSocketDecoder(**kwargs)
    out: list[asock.Event] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        dec.receive_data(data[i : i + step])
        out += dec.events()
    dec.receive_eof()
    out += dec.events()
    return out


# ---------------------------------------------------------------- wire format


def test_frame_layout_matches_asterisk() -> None:
    # ast_audiosocket_init: 0x01 0x00 0x10 + uuid_parse() bytes.
    assert asock.uuid_frame(CALL) == b"\x01\x00\x10" + bytes.fromhex("40325ec25efd4bd3805f53576e581d13")
    assert asock.uuid_frame(str(CALL)) == asock.uuid_frame(CALL)
    assert asock.hangup_frame() == b"\x00\x00\x00"
    assert asock.dtmf_frame("5") == b"\x03\x00\x015"
    assert asock.audio_frame(b"\x00" * 320) == b"\x10\x01\x40" + b"\x00" * 320  # length big-endian
    assert asock.audio_frame(b"\x00" * 2, 16000)[0] == 0x12
    assert asock.error_frame() == b"\xff\x00\x01\x01"
    assert asock.error_frame(None) == b"\xff\x00\x00"
    assert asock.encode_frame(0x42, b"xy") == b"\x42\x00\x02xy"


def test_kind_numbering() -> None:
    assert [int(k) for k in Kind] == [0x00, 0x01, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0xFF]
    assert asock.AUDIO_KIND_RATES[Kind.AUDIO_16K] == 16000 and Kind.AUDIO_16K == 0x12
    assert asock.audio_kind_for_rate(8000) is Kind.AUDIO_8K
    assert asock.audio_kind_for_rate(44100) is Kind.AUDIO_44K
    assert asock.audio_kind_for_rate(192000) == 0x18
    with pytest.raises(UsageError):
        asock.audio_kind_for_rate(11025)


def test_encoder_refusals() -> None:
    with pytest.raises(UsageError):
        asock.encode_frame(256)
    with pytest.raises(UsageError):
        asock.encode_frame(-1)
    with pytest.raises(UsageError):
        asock.encode_frame(Kind.AUDIO_8K, bytes(65536))
    assert len(asock.encode_frame(Kind.AUDIO_8K, bytes(65534))) == 65537
    with pytest.raises(UsageError):
        asock.audio_frame(b"\x00\x00\x00")
    with pytest.raises(UsageError):
        asock.dtmf_frame("E")
    with pytest.raises(UsageError):
        asock.dtmf_frame("12")
    with pytest.raises(UsageError):
        list(asock.audio_frames(b"\x00" * 4, 8000, frame_ms=0))
    with pytest.raises(UsageError):
        asock.encode_event("hangup")  # type: ignore[arg-type]


def test_audio_frames_splits_like_asterisk() -> None:
    pcm = bytes(range(200)) * 9  # 1800 bytes = 900 samples at 8 kHz
    frames = list(asock.audio_frames(pcm, 8000, frame_ms=20))
    assert [len(f) - 3 for f in frames] == [320] * 5 + [200]
    dec = AudioSocketDecoder()
    dec.receive_data(asock.uuid_frame(CALL) + b"".join(frames))
    events = dec.events()
    assert b"".join(e.pcm for e in events if isinstance(e, AudioFrame)) == pcm
    assert [len(f) - 3 for f in asock.audio_frames(b"\x00" * 1280, 16000)] == [640, 640]


def test_encode_event_inverts_decoding() -> None:
    assert b"".join(asock.encode_event(e) for e in EXPECTED) == call_bytes()
    assert asock.encode_event(RemoteError(4)) == b"\xff\x00\x01\x04"
    assert asock.encode_event(RemoteError(0)) == b"\xff\x00\x00"


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7, 100])
def test_decode_whole_and_split(chunk: int | None) -> None:
    assert decode_all(call_bytes(), chunk) == EXPECTED


def test_decoder_state_and_counters() -> None:
    dec = AudioSocketDecoder()
    assert dec.call_id is None and not dec.hung_up
    data = call_bytes()
    dec.receive_data(data[:10])  # partial UUID frame
    assert dec.next_event() is None and dec.buffered_bytes == 10
    dec.receive_data(data[10:])
    events = dec.events()
    assert events == EXPECTED
    assert dec.call_id == CALL and dec.hung_up
    assert dec.bytes_received == len(data) and dec.frames_decoded == len(EXPECTED)
    assert dec.buffered_bytes == 0
    frame = events[1]
    assert isinstance(frame, AudioFrame) and frame.sample_count == 160 and frame.duration_s == pytest.approx(0.02)


def test_empty_audio_and_error_payloads() -> None:
    data = asock.uuid_frame(CALL) + asock.encode_frame(Kind.AUDIO_8K) + asock.encode_frame(Kind.ERROR)
    assert decode_all(data) == [CallStarted(CALL), AudioFrame(b"", 8000), RemoteError(0, b"")]


def test_every_audio_rate_decodes() -> None:
    for kind, rate in asock.AUDIO_KIND_RATES.items():
        events = decode_all(asock.uuid_frame(CALL) + asock.encode_frame(kind, b"\x00\x01"))
        assert events[1] == AudioFrame(b"\x00\x01", rate)


def test_eof_between_frames_is_a_clean_end() -> None:
    data = asock.uuid_frame(CALL) + asock.audio_frame(PCM_20MS_8K)
    assert decode_all(data) == EXPECTED[:2]  # no hangup frame: closing the socket suffices
    dec = AudioSocketDecoder()
    dec.receive_eof()
    assert dec.next_event() is None


def test_hangup_mid_utterance_delivers_the_audio_before_it() -> None:
    data = asock.uuid_frame(CALL) + b"".join(asock.audio_frames(PCM_20MS_8K * 3)) + asock.hangup_frame()
    events = decode_all(data, chunk=50)
    assert events[-1] == Hangup()
    assert b"".join(e.pcm for e in events if isinstance(e, AudioFrame)) == PCM_20MS_8K * 3


# ---------------------------------------------------------------- error paths


def expect_error(data: bytes, reason: str, *, eof: bool = False, **kwargs: int) -> list[asock.Event]:
    """Feed ``data`` whole, drain; the decoder must fail with ``reason`` and stay failed."""
    dec = AudioSocketDecoder(**kwargs)
    events: list[asock.Event] = []
    with pytest.raises(RemoteProtocolError) as info:
        dec.receive_data(data)
        while (event := dec.next_event()) is not None:
            events.append(event)
        if eof:
            dec.receive_eof()
            while (event := dec.next_event()) is not None:
                events.append(event)
    assert info.value.reason == reason
    assert info.value.reason.isascii() and info.value.detail.isascii()
    with pytest.raises(RemoteProtocolError) as again:
        dec.next_event()
    assert again.value is info.value  # sticky
    with pytest.raises(RemoteProtocolError):
        dec.receive_data(asock.hangup_frame())
    with pytest.raises(RemoteProtocolError):
        dec.receive_eof()
    return events


def test_uuid_not_first() -> None:
    expect_error(asock.audio_frame(PCM_20MS_8K), "UUID_NOT_FIRST")
    expect_error(asock.hangup_frame(), "UUID_NOT_FIRST")
    expect_error(b"\x10", "UUID_NOT_FIRST")  # known from the first byte


def test_uuid_repeated() -> None:
    events = expect_error(asock.uuid_frame(CALL) + asock.uuid_frame(CALL), "UUID_REPEATED")
    assert events == [CallStarted(CALL)]


@pytest.mark.parametrize("size", [0, 15, 17, 36])
def test_bad_uuid_length(size: int) -> None:
    expect_error(asock.encode_frame(Kind.UUID, b"u" * size), "BAD_UUID_LENGTH")


@pytest.mark.parametrize("kind", [0x02, 0x04, 0x0F, 0x19, 0x20, 0x7F, 0xFE])
def test_unknown_kind(kind: int) -> None:
    events = expect_error(asock.uuid_frame(CALL) + asock.encode_frame(kind, b"zz"), "UNKNOWN_KIND")
    assert events == [CallStarted(CALL)]
    expect_error(bytes([kind]), "UNKNOWN_KIND")  # before the UUID: the kind is checked first


def test_unknown_kind_reported_from_the_header_before_its_payload() -> None:
    dec = AudioSocketDecoder()
    dec.receive_data(asock.uuid_frame(CALL))
    assert dec.events() == [CallStarted(CALL)]
    with pytest.raises(RemoteProtocolError) as info:
        dec.receive_data(b"\x42\xff")
    assert info.value.reason == "UNKNOWN_KIND"


def test_odd_pcm_length() -> None:
    expect_error(asock.uuid_frame(CALL) + asock.encode_frame(Kind.AUDIO_8K, b"\x00" * 321), "ODD_PCM_LENGTH")
    expect_error(asock.uuid_frame(CALL) + asock.encode_frame(Kind.AUDIO_16K, b"\x00"), "ODD_PCM_LENGTH")


@pytest.mark.parametrize("payload", [b"", b"12", b"E", b"\x00", b"\xff", b" "])
def test_bad_dtmf(payload: bytes) -> None:
    expect_error(asock.uuid_frame(CALL) + asock.encode_frame(Kind.DTMF, payload), "BAD_DTMF")


def test_every_dtmf_digit_decodes() -> None:
    data = asock.uuid_frame(CALL) + b"".join(asock.dtmf_frame(d) for d in asock.DTMF_DIGITS)
    assert decode_all(data)[1:] == [Dtmf(d) for d in asock.DTMF_DIGITS]


def test_frame_too_large_checked_from_the_header_before_buffering() -> None:
    dec = AudioSocketDecoder(max_payload=1000)
    dec.receive_data(asock.uuid_frame(CALL))
    dec.events()
    dec.receive_data(asock.audio_frame(b"\x00" * 1000))  # exactly the limit is fine
    assert dec.events() == [AudioFrame(b"\x00" * 1000, 8000)]
    with pytest.raises(RemoteProtocolError) as info:
        dec.receive_data(b"\x10\x03\xea")  # header alone announces 1002 bytes
    assert info.value.reason == "FRAME_TOO_LARGE"
    assert dec.buffered_bytes == 3  # nothing of the payload was waited for


def test_default_limit_and_bad_limits() -> None:
    big = asock.encode_frame(Kind.AUDIO_8K, bytes(asock.DEFAULT_MAX_PAYLOAD + 2))
    expect_error(asock.uuid_frame(CALL) + big, "FRAME_TOO_LARGE")
    assert AudioSocketDecoder(max_payload=65535).max_payload == 65535
    for bad in (0, 65536):
        with pytest.raises(UsageError):
            AudioSocketDecoder(max_payload=bad)


def test_hangup_with_payload() -> None:
    expect_error(asock.uuid_frame(CALL) + asock.encode_frame(Kind.HANGUP, b"x"), "UNEXPECTED_DATA")


def test_data_after_hangup_in_the_same_chunk_still_delivers_the_hangup() -> None:
    data = asock.uuid_frame(CALL) + asock.audio_frame(PCM_20MS_8K) + asock.hangup_frame() + asock.audio_frame(b"\x00\x00")
    events = expect_error(data, "DATA_AFTER_HANGUP")
    assert events == [CallStarted(CALL), AudioFrame(PCM_20MS_8K, 8000), Hangup()]


def test_data_after_hangup_in_a_later_chunk() -> None:
    dec = AudioSocketDecoder()
    dec.receive_data(asock.uuid_frame(CALL) + asock.hangup_frame())
    assert dec.events() == [CallStarted(CALL), Hangup()]
    dec.receive_data(b"")  # nothing is not data
    with pytest.raises(RemoteProtocolError) as info:
        dec.receive_data(b"\x00")
    assert info.value.reason == "DATA_AFTER_HANGUP"


@pytest.mark.parametrize("cut", [1, 2, 3, 10, 18])
def test_truncated_first_frame(cut: int) -> None:
    expect_error(asock.uuid_frame(CALL)[:cut], "TRUNCATED", eof=True)


def test_truncated_after_complete_frames_delivers_them_first() -> None:
    data = asock.uuid_frame(CALL) + asock.audio_frame(PCM_20MS_8K) + asock.audio_frame(PCM_20MS_8K)[:-1]
    dec = AudioSocketDecoder()
    dec.receive_data(data)
    dec.receive_eof()  # complete frames are still buffered: no error yet
    assert dec.next_event() == CallStarted(CALL)
    assert dec.next_event() == AudioFrame(PCM_20MS_8K, 8000)
    with pytest.raises(RemoteProtocolError) as info:
        dec.next_event()
    assert info.value.reason == "TRUNCATED"


def test_receive_data_after_eof_is_a_usage_error() -> None:
    dec = AudioSocketDecoder()
    dec.receive_eof()
    with pytest.raises(UsageError):
        dec.receive_data(b"\x01")


# ---------------------------------------------------------------- property


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), chunk=st.integers(1, 64), valid_prefix=st.booleans(), eof=st.booleans())
def test_any_bytes_give_events_or_remote_protocol_error(data: bytes, chunk: int, valid_prefix: bool, eof: bool) -> None:
    if valid_prefix:
        data = asock.uuid_frame(CALL) + data
    dec = AudioSocketDecoder(max_payload=200)
    events: list[asock.Event] = []
    try:
        for i in range(0, len(data), chunk):
            dec.receive_data(data[i : i + chunk])
            events += dec.events()
        if eof:
            dec.receive_eof()
            events += dec.events()
    except RemoteProtocolError as exc:
        assert exc.reason.isascii() and exc.reason.isupper()
        return
    # Whatever decoded cleanly re-encodes to the bytes consumed.
    consumed = b"".join(asock.encode_event(e) for e in events)
    assert data.startswith(consumed)
    assert len(consumed) + dec.buffered_bytes == len(data)
    if eof:
        assert dec.buffered_bytes == 0


@settings(max_examples=100, deadline=None)
@given(
    body=st.lists(
        st.one_of(
            st.binary(max_size=80).filter(lambda b: len(b) % 2 == 0).map(lambda b: AudioFrame(b, 8000)),
            st.sampled_from(asock.DTMF_DIGITS).map(Dtmf),
            st.integers(0, 255).map(lambda c: RemoteError(c, bytes([c]))),
        ),
        max_size=12,
    ),
    chunk=st.integers(1, 40),
)
def test_round_trip_of_valid_calls(body: list[asock.Event], chunk: int) -> None:
    events = [CallStarted(CALL), *body, Hangup()]
    assert decode_all(b"".join(asock.encode_event(e) for e in events), chunk) == events
