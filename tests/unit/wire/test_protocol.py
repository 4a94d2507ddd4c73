"""Unit tests of the sans-IO codec: no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.errors import HandshakeError, RemoteProtocolError, UsageError
from whisper_streaming.wire.protocol import (
    MAGIC,
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    Options,
    OptionsAccepted,
    PacketDecoder,
    Result,
    Role,
    Status,
    StatusRequest,
    Summary,
    UserId,
    Welcome,
    encode_packet,
    sanitize_text,
)
from whisper_streaming.analyzers.sentiment import Sentiment
from whisper_streaming.wire.result_fields import sentiment_fields, sentiment_from_fields

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


def test_odd_audio_length_is_the_sessions_call() -> None:
    """The codec cannot know the stream's encoding (G.711 bytes may be odd): the session checks."""
    assert encode_packet(Audio(b"abc")) == b"%s0003abc"
    dec = PacketDecoder(Role.SERVER, expect_magic=False)
    dec.receive_data(b"%s0003abc")
    assert dec.packets() == [Audio(b"abc")]


def test_encode_usage_errors() -> None:
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
    st.builds(Options, st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True), st.from_regex(r"[0-9a-zA-Z_.:-]{0,8}", fullmatch=True)),
                                unique_by=lambda kv: kv[0], max_size=4).map(tuple)),
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
                    assert type(packet) in (UserId, Begin, Audio, Finish, StatusRequest, Options)
            dec.receive_eof()
        except RemoteProtocolError as exc:
            assert exc.reason.isascii() and exc.reason.isupper()


@settings(max_examples=200, deadline=None)
@given(st.lists(_valid_packets, max_size=20), st.integers(min_value=1, max_value=97))
def test_property_roundtrip_any_chunking(packets: list, chunk: int) -> None:
    stream = MAGIC + b"".join(encode_packet(p) for p in packets)
    assert _decode_all([stream[i : i + chunk] for i in range(0, len(stream), chunk)]) == packets


# ---------------------------------------------------------------------------- extensions: %o %O %S, sentiment in %R


def test_options_wire_format() -> None:
    assert encode_packet(Options((("sentiment", "1"),))) == b"%o000Bsentiment=1"
    assert encode_packet(Options()) == b"%o0000"
    assert encode_packet(OptionsAccepted((("sentiment", "0"), ("x", "")))) == b"%O000Esentiment=0;x="
    assert encode_packet(Summary("results: 0")) == b"%S000Aresults: 0"


def test_extension_packets_round_trip() -> None:
    server_side = [OptionsAccepted((("sentiment", "1"),)), Summary("results: 1\nmean score: 0.500"), OptionsAccepted()]
    assert _decode_all([b"".join(encode_packet(p) for p in server_side)], Role.CLIENT) == server_side
    client_side = [UserId("a"), Options((("sentiment", "1"), ("future_key", "8000"))), Options(), Begin()]
    assert _decode_all([MAGIC + b"".join(encode_packet(p) for p in client_side)]) == client_side


@pytest.mark.parametrize(
    "data",
    [b"sentiment", b"=1", b"sentiment=1;", b";sentiment=1", b"a=1;a=2", b"Sentiment=1", b"sentiment=1=2", b"k=\x01", b"\xff\xfe=1", b"a b=1"],
)
def test_malformed_options_are_bad_option(data: bytes) -> None:
    dec = PacketDecoder(Role.SERVER, expect_magic=False)
    dec.receive_data(b"%%o%04X" % len(data) + data)
    with pytest.raises(RemoteProtocolError) as exc:
        dec.next_packet()
    assert exc.value.reason == "BAD_OPTION"


def test_client_cannot_encode_malformed_options() -> None:
    for pairs in [(("a;b", "1"),), (("a", "x=y"),), (("a", "1"), ("a", "2")), (("", "1"),)]:
        with pytest.raises(UsageError):
            encode_packet(Options(pairs))


def test_server_only_extension_headers_rejected_from_client() -> None:
    for wire in (b"%O0000", b"%S0000"):
        dec = PacketDecoder(Role.SERVER, expect_magic=False)
        dec.receive_data(wire)
        with pytest.raises(RemoteProtocolError, match="UNKNOWN_HEADER"):
            dec.next_packet()
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(b"%o0000")
    with pytest.raises(RemoteProtocolError, match="UNKNOWN_HEADER"):
        dec.next_packet()


def test_result_with_sentiment_wire_format() -> None:
    assert encode_packet(Result(1.25, 3.4, "I hate it", sentiment_fields(Sentiment("negative", 0.91234)))) == b"%R0032" + b"1.2 3.4 : I hate it\tsentiment=negative score=0.912"
    assert encode_packet(Result(0, 2, "안녕", sentiment_fields(Sentiment("unsupported", None, "ko")))) == (
        b"%R" + b"%04X" % len("0.0 2.0 : 안녕\tsentiment=unsupported language=ko".encode()) + "0.0 2.0 : 안녕\tsentiment=unsupported language=ko".encode()
    )
    assert encode_packet(Result(1.25, 3.4, "hi")) == b"%R000C1.2 3.4 : hi"  # no sentiment: the original bytes


@pytest.mark.parametrize(
    "result",
    [
        Result(1.0, 2.0, "good", sentiment_fields(Sentiment("positive", 0.5))),
        Result(1.0, 2.0, "meh : x", sentiment_fields(Sentiment("neutral", 1.0))),
        Result(1.0, 2.0, "bad", sentiment_fields(Sentiment("negative", 0.0))),
        Result(1.0, 2.0, "네", sentiment_fields(Sentiment("unsupported", None, "ko"))),
        Result(1.0, 2.0, "sentiment=positive score=1.000"),  # text that looks like the field, without a tab
        Result(1.0, 2.0, ""),
    ],
)
def test_result_with_sentiment_round_trips(result: Result) -> None:
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(encode_packet(result))
    assert dec.next_packet() == result


def test_result_text_is_sanitized_so_the_field_cannot_be_forged() -> None:
    forged = Result(0.0, 1.0, "ok\tsentiment=positive score=1.000\nline two\x00")
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(encode_packet(forged))
    got = dec.next_packet()
    assert got == Result(0.0, 1.0, "ok sentiment=positive score=1.000 line two ")
    assert got.fields == () and sentiment_from_fields(got.fields) is None
    assert sanitize_text("a\u2028b\x85c\u00e9") == "a b c\u00e9"


@pytest.mark.parametrize(
    "field",
    ["sentiment=happy score=0.5", "sentiment=positive", "sentiment=positive score=x", "sentiment=positive score=1.5", "sentiment=unsupported"],
)
def test_bad_sentiment_field_is_bad_result(field: str) -> None:
    data = f"0.0 1.0 : text\t{field}".encode()
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(b"%%R%04X" % len(data) + data)
    got = dec.next_packet()  # the codec carries the fields; their reader judges them
    assert got.text == "text" and got.fields[0][0] == "sentiment"  # type: ignore[union-attr]
    with pytest.raises(RemoteProtocolError) as exc:
        sentiment_from_fields(got.fields)  # type: ignore[union-attr]
    assert exc.value.reason == "BAD_RESULT"


def test_sentiment_field_ignores_unknown_keys_and_a_plain_tab_stays_text() -> None:
    data = "0.0 1.0 : text\tsentiment=positive score=0.800 model=x".encode()
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(b"%%R%04X" % len(data) + data + encode_packet(Status("x")))
    got = dec.next_packet()
    assert got == Result(0.0, 1.0, "text", (("sentiment", "positive"), ("score", "0.800"), ("model", "x")))
    assert sentiment_from_fields(got.fields) == Sentiment("positive", 0.8)  # type: ignore[union-attr]
    legacy = "0.0 1.0 : a\tb".encode()  # an old server's text with a tab: no field, kept as text
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(b"%%R%04X" % len(legacy) + legacy)
    assert dec.next_packet() == Result(0.0, 1.0, "a\tb")


def test_long_result_with_sentiment_keeps_the_field() -> None:
    data = encode_packet(Result(0, 1, "가" * 30000, sentiment_fields(Sentiment("positive", 0.75))))
    assert int(data[2:6], 16) == len(data) - 6 <= 0xFFFF
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(data)
    got = dec.next_packet()
    assert set(got.text) == {"가"} and sentiment_from_fields(got.fields) == Sentiment("positive", 0.75)  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["positive", "negative", "neutral"]), st.floats(min_value=0, max_value=1))
def test_property_any_text_with_sentiment_round_trips(text: str, label: str, score: float) -> None:
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(encode_packet(Result(0.5, 1.5, text, sentiment_fields(Sentiment(label, score)))))
    got = dec.next_packet()
    assert got.text == sanitize_text(text)  # type: ignore[union-attr]
    sentiment = sentiment_from_fields(got.fields)  # type: ignore[union-attr]
    assert sentiment.label == label and abs(sentiment.score - score) <= 0.00051  # type: ignore[union-attr]


def test_result_fields_are_opaque_key_value_pairs() -> None:
    result = Result(0.0, 1.0, "x", (("speaker", "alice"), ("confidence", "0.91")))
    assert encode_packet(result) == b"%R0029" + b"0.0 1.0 : x\tspeaker=alice confidence=0.91"
    dec = PacketDecoder(Role.CLIENT)
    dec.receive_data(encode_packet(result))
    assert dec.next_packet() == result


@pytest.mark.parametrize("fields", [(("Bad", "1"),), (("k", "a b"),), (("k", "a=b"),), (("", "x"),), (("k", "é"),)])
def test_bad_result_fields_are_refused_when_encoding(fields) -> None:
    with pytest.raises(UsageError):
        encode_packet(Result(0.0, 1.0, "x", fields))


@pytest.mark.parametrize("user_id", ["a\u2028b", "a\u2029b", "admin\u202e", "x\u2066y\u2069", "\u200fz"])
def test_user_ids_with_line_separators_or_bidi_controls_are_bad(user_id: str) -> None:
    dec = PacketDecoder(Role.SERVER)
    dec.receive_data(MAGIC + b"%u" + b"%04X" % len(user_id.encode()) + user_id.encode())
    with pytest.raises(RemoteProtocolError) as exc:
        dec.next_packet()
    assert exc.value.reason == "BAD_USER_ID"
    with pytest.raises(UsageError):
        encode_packet(UserId(user_id))


def test_user_ids_in_other_scripts_are_fine() -> None:
    for user_id in ("김철수", "مریم\u200cجان", "👩\u200d💻"):  # Persian ZWNJ and the emoji ZWJ are not bidi controls
        dec = PacketDecoder(Role.SERVER)
        dec.receive_data(MAGIC + encode_packet(UserId(user_id)))
        assert dec.next_packet() == UserId(user_id)


# ---------------------------------------------------------------------------- length_encoding: decimal


def test_decimal_lengths_read_the_seed_examples() -> None:
    """The original description's examples: %s0960 is a 960-byte frame, %E0014 a 14-byte reason."""
    dec = PacketDecoder(Role.SERVER, length_encoding="decimal")
    dec.receive_data(MAGIC + b"%u0005alice" + b"%b0000" + b"%s0960" + bytes(960) + b"%f0000")
    assert dec.packets() == [UserId("alice"), Begin(), Audio(bytes(960)), Finish()]
    assert encode_packet(Error("SERVER_TOO_BUSY"), length_encoding="decimal") == b"%E0015SERVER_TOO_BUSY"
    assert encode_packet(Error("SERVER_TOO_BUSY")) == b"%E000FSERVER_TOO_BUSY"  # hex stays the default


@pytest.mark.parametrize("encoding", ["hex", "decimal"])
def test_both_length_encodings_round_trip(encoding: str) -> None:
    packets = [UserId("bob"), Begin(), Audio(bytes(2000)), Finish(), StatusRequest()]
    dec = PacketDecoder(Role.SERVER, length_encoding=encoding)
    dec.receive_data(MAGIC + b"".join(encode_packet(p, length_encoding=encoding) for p in packets))
    assert dec.packets() == packets


def test_decimal_refuses_hex_digits_and_longer_data() -> None:
    dec = PacketDecoder(Role.SERVER, length_encoding="decimal")
    dec.receive_data(MAGIC + b"%s03C0" + bytes(960))
    with pytest.raises(RemoteProtocolError) as exc:
        dec.next_packet()
    assert exc.value.reason == "BAD_LENGTH"
    with pytest.raises(UsageError):
        encode_packet(Audio(bytes(10000)), length_encoding="decimal")
    long = encode_packet(Result(0, 1, "x" * 20000), length_encoding="decimal")  # result text is cut to fit
    assert int(long[2:6]) == len(long) - 6 <= 9999
    with pytest.raises(UsageError):
        PacketDecoder(Role.SERVER, length_encoding="octal")
