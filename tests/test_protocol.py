"""Unit tests of the sans-IO codec: no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.errors import HandshakeError, RemoteProtocolError, UsageError
from whisper_streaming.protocol import (
    MAGIC,
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    PacketDecoder,
    Result,
    Role,
    Status,
    StatusRequest,
    UserId,
    Welcome,
    encode_packet,
)

CLIENT_PACKETS = [UserId("alice"), Begin(), Audio(b"\x01\x00" * 480), Audio(b""), Finish(), StatusRequest()]
SERVER_PACKETS = [Welcome("Welcome!"), Result(1.2, 3.4, "안녕하세요 : world"), Error("TIMEOUT"), Finished(), Status("engine 0: idle")]


def _stream() -> bytes:
    return MAGIC + b"".join(encode_packet(p) for p in CLIENT_PACKETS)


def _decode_all(chunks: list[bytes], role: Role = Role.SERVER) -> list:
    dec = PacketDecoder(role)
    out = []
    for chunk in chunks:
        dec.receive_data(chunk)
        out.extend(dec.packets())
    return out


def test_encode_matches_seed_examples() -> None:
    assert encode_packet(UserId("user1234")) == b"%u0008user1234"
    assert encode_packet(Begin()) == b"%b0000"
    assert encode_packet(Audio(b"\x00" * 960)) == b"%s03C0" + b"\x00" * 960
    assert encode_packet(Result(1.25, 3.4, "hi")) == b"%R000C1.2 3.4 : hi"
    assert encode_packet(Finished()) == b"%F0000"


def test_whole_input() -> None:
    assert _decode_all([_stream()]) == CLIENT_PACKETS


def test_one_byte_at_a_time() -> None:
    data = _stream()
    assert _decode_all([data[i : i + 1] for i in range(len(data))]) == CLIENT_PACKETS


@pytest.mark.parametrize("cut", [1, 5, 21, 22, 23, 27, 28, 40, 500])
def test_split_across_reads(cut: int) -> None:
    data = _stream()
    assert _decode_all([data[:cut], data[cut:]]) == CLIENT_PACKETS


def test_trailing_partial_packet_waits_then_eof_is_truncated() -> None:
    dec = PacketDecoder(Role.SERVER)
    dec.receive_data(MAGIC + encode_packet(Begin()) + b"%s00")
    assert dec.packets() == [Begin()]
    assert dec.buffered_bytes == 4
    with pytest.raises(RemoteProtocolError) as exc:
        dec.receive_eof()
    assert exc.value.reason == "TRUNCATED"


def test_clean_eof() -> None:
    dec = PacketDecoder(Role.SERVER)
    dec.receive_data(MAGIC + encode_packet(Finish()))
    assert dec.packets() == [Finish()]
    dec.receive_eof()
    with pytest.raises(UsageError):
        dec.receive_data(b"x")


def test_lowercase_hex_length_accepted() -> None:
    dec = PacketDecoder(Role.SERVER, expect_magic=False)
    dec.receive_data(b"%s000a" + b"\x00" * 10)
    assert dec.next_packet() == Audio(b"\x00" * 10)


def test_server_role_roundtrip() -> None:
    data = b"".join(encode_packet(p) for p in SERVER_PACKETS)
    assert _decode_all([data], Role.CLIENT) == SERVER_PACKETS


def test_result_times_one_decimal() -> None:
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(encode_packet(Result(0.04, 12.36, "x")))
    assert dec.next_packet() == Result(0.0, 12.4, "x")


def test_bad_magic_fails_at_first_wrong_byte() -> None:
    dec = PacketDecoder(Role.SERVER)
    dec.receive_data(MAGIC[:5])
    with pytest.raises(HandshakeError):
        dec.receive_data(b"X")
    with pytest.raises(HandshakeError):  # sticky
        dec.next_packet()


def test_packets_wait_for_magic() -> None:
    dec = PacketDecoder(Role.SERVER)
    dec.receive_data(MAGIC[:10])
    assert dec.next_packet() is None
    assert not dec.handshake_done
    dec.receive_data(MAGIC[10:])
    assert dec.handshake_done


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"%x0000", "UNKNOWN_HEADER"),
        (b"%R0000", "UNKNOWN_HEADER"),  # server-only header sent by a client
        (b"ab0000", "UNKNOWN_HEADER"),
        (b"%s00G0", "BAD_LENGTH"),
        (b"%s+001", "BAD_LENGTH"),
        (b"%s 001", "BAD_LENGTH"),
        (b"%s0003abc", "ODD_PCM_LENGTH"),
        (b"%u0000", "BAD_USER_ID"),
        (b"%u0002\xff\xfe", "BAD_USER_ID"),
        (b"%u0003a\x1bb", "BAD_USER_ID"),
        (b"%u0041" + b"a" * 65, "BAD_USER_ID"),
        (b"%b0001x", "UNEXPECTED_DATA"),
        (b"%f0001x", "UNEXPECTED_DATA"),
    ],
)
def test_error_paths(wire: bytes, reason: str) -> None:
    dec = PacketDecoder(Role.SERVER, expect_magic=False)
    dec.receive_data(wire)
    with pytest.raises(RemoteProtocolError) as exc:
        dec.next_packet()
    assert exc.value.reason == reason
    assert reason.isascii()
    with pytest.raises(RemoteProtocolError):  # sticky error state
        dec.next_packet()


def test_user_id_64_chars_unicode_ok() -> None:
    dec = PacketDecoder(Role.SERVER, expect_magic=False)
    dec.receive_data(encode_packet(UserId("한" * 64)))
    assert dec.next_packet() == UserId("한" * 64)


def test_client_side_bad_result() -> None:
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(b"%R0005hello")
    with pytest.raises(RemoteProtocolError) as exc:
        dec.next_packet()
    assert exc.value.reason == "BAD_RESULT"


def test_encode_usage_errors() -> None:
    with pytest.raises(UsageError):
        encode_packet(Audio(b"\x00"))
    with pytest.raises(UsageError):
        encode_packet(UserId(""))
    with pytest.raises(UsageError):
        encode_packet(Status("x" * 70000))
    with pytest.raises(UsageError):
        encode_packet("nope")  # type: ignore[arg-type]


def test_long_result_is_cut_on_character_boundary() -> None:
    data = encode_packet(Result(0, 1, "가" * 30000))
    assert int(data[2:6], 16) == len(data) - 6 <= 0xFFFF
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(data)
    assert set(dec.next_packet().text) == {"가"}  # type: ignore[union-attr]


_valid_packets = st.one_of(
    st.builds(UserId, st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)),
    st.just(Begin()),
    st.builds(Audio, st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2])),
    st.just(Finish()),
    st.just(StatusRequest()),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_property_any_bytes_give_packets_or_protocol_error(data: bytes, chunk: int) -> None:
    for prefix in (b"", MAGIC):
        dec = PacketDecoder(Role.SERVER)
        stream = prefix + data
        try:
            for i in range(0, len(stream), chunk):
                dec.receive_data(stream[i : i + chunk])
                for packet in dec.packets():
                    assert type(packet) in (UserId, Begin, Audio, Finish, StatusRequest)
            dec.receive_eof()
        except RemoteProtocolError as exc:
            assert exc.reason.isascii() and exc.reason.isupper()


@settings(max_examples=200, deadline=None)
@given(st.lists(_valid_packets, max_size=20), st.integers(min_value=1, max_value=97))
def test_property_roundtrip_any_chunking(packets: list, chunk: int) -> None:
    stream = MAGIC + b"".join(encode_packet(p) for p in packets)
    assert _decode_all([stream[i : i + chunk] for i in range(0, len(stream), chunk)]) == packets
