"""Sans-IO codec for the ``WHISPER_STREAMING_V1.0`` wire protocol.

No sockets here: bytes in, typed packets out (:class:`PacketDecoder`); packets in, bytes out
(:func:`encode_packet`).  The design follows h11's ``Connection.receive_data`` /
``next_event``: the transport feeds whatever bytes arrived, then pulls complete packets until
the decoder answers ``None`` (needs more data).  A protocol violation raises
:class:`~whisper_streaming.errors.RemoteProtocolError` and the decoder stays in that error
state (every later call raises the same error), like h11's sticky ``ERROR`` state.

Wire format (from the original system description, ``shared/seeds/whisper_streaming_tcp_server.md``)::

    handshake : the 22 ASCII bytes  b"WHISPER_STREAMING_V1.0"  (client -> server, once)
    packet    : code (2 bytes, '%' + letter) | length (4 ASCII hex digits, 0000-FFFF) | data

Client to server: ``%u`` user id, ``%b`` begin, ``%s`` PCM s16le 16 kHz mono, ``%f`` finish,
``%c`` status.  Server to client: ``%L`` welcome, ``%R`` result ``"start end : text"``,
``%E`` error, ``%F`` finished, ``%C`` status.

Extensions (a client that never sends ``%o`` sees none of them unless the operator turns
sentiment on server-wide): ``%o`` options ``key=value;...`` (client -> server, see
:mod:`~whisper_streaming.core.options`), answered by ``%O`` with the accepted options;
``%R`` may end with ``"\t"`` + optional fields, space-separated ASCII ``key=value`` tokens
(:attr:`Result.fields`; today the sentiment: ``sentiment=negative score=0.912`` or
``sentiment=unsupported language=ko``, see :mod:`~whisper_streaming.wire.result_fields`), which
the text can never contain (result text is sanitized: tabs, newlines and other control
characters become spaces); ``%S`` a stream summary, sent right before ``%F``.  The codec does
not know what a field means: the wire adapter renders annotations into fields, and readers
interpret the keys they know and ignore the others.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Union

from whisper_streaming.core.text import is_unsafe_in_ids, sanitize_text
from whisper_streaming.errors import ErrorReason, HandshakeError, RemoteProtocolError, UsageError
from whisper_streaming.core.options import OptionPairs, format_pairs, parse_pairs, redact_pairs

__all__ = [
    "MAGIC",
    "HEADER_BYTES",
    "MAX_DATA_BYTES",
    "LENGTH_ENCODINGS",
    "max_data_bytes",
    "MAX_USER_ID_CHARS",
    "Role",
    "UserId",
    "Begin",
    "Audio",
    "Finish",
    "StatusRequest",
    "Options",
    "Welcome",
    "Result",
    "Partial",
    "Error",
    "Finished",
    "Status",
    "OptionsAccepted",
    "Summary",
    "Packet",
    "ClientPacket",
    "ServerPacket",
    "PacketDecoder",
    "encode_packet",
    "format_result_text",
    "ResultFields",
    "format_fields",
    "sanitize_text",
]

MAGIC = b"WHISPER_STREAMING_V1.0"
"""Handshake the client sends first (22 ASCII bytes)."""
HEADER_BYTES = 6
"""2-byte code plus 4 hex digits of length."""
MAX_DATA_BYTES = 0xFFFF

LENGTH_ENCODINGS = ("hex", "decimal")
"""How the 4 ASCII digits of a packet's length are read: ``hex`` (the spec's text: 0000-FFFF) or
``decimal`` (0000-9999: what the original description's examples show, e.g. ``%s0960`` for a
960-byte frame, ``%E0014`` for a 14-byte reason; for gateways built from those examples)."""


def max_data_bytes(length_encoding: str = "hex") -> int:
    """The longest data field the length encoding can state (65535 hex, 9999 decimal)."""
    return MAX_DATA_BYTES if length_encoding == "hex" else 9999
"""Largest data field the 4-hex-digit length can express (65535 bytes)."""
MAX_USER_ID_CHARS = 64

_HEX = re.compile(rb"[0-9A-Fa-f]{4}\Z")
_DECIMAL = re.compile(rb"[0-9]{4}\Z")


def _check_length_encoding(length_encoding: str) -> None:
    if length_encoding not in LENGTH_ENCODINGS:
        raise UsageError(f"length_encoding must be one of {LENGTH_ENCODINGS}, got {length_encoding!r}")


class Role(enum.Enum):
    """Which side's packets a decoder accepts: ``SERVER`` decodes what clients send."""

    SERVER = "server"
    CLIENT = "client"


# ---------------------------------------------------------------- client -> server packets


@dataclass(frozen=True)
class UserId:
    """``%u``: the caller's user id (UTF-8, 1-64 characters, no control characters)."""

    user_id: str


@dataclass(frozen=True)
class Begin:
    """``%b``: begin a stream; result times restart at 0 s."""


@dataclass(frozen=True)
class Audio:
    """``%s``: audio, by default PCM signed 16-bit little-endian, 16 kHz, mono.

    The stream's ``%o`` ``sample_rate``/``encoding`` say otherwise; the codec does not know the
    stream's encoding, so the session checks the length (an even byte count for ``pcm_s16le``,
    ``ODD_PCM_LENGTH``).  :attr:`sample_count` counts s16le samples.
    """

    pcm: bytes

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2


@dataclass(frozen=True)
class Finish:
    """``%f``: end the stream; the server flushes every result, then sends ``%F``."""


@dataclass(frozen=True)
class StatusRequest:
    """``%c``: ask for the server status (allowed any time after the handshake)."""


@dataclass(frozen=True)
class Options:
    """``%o``: stream options ``key=value;...`` for the following streams (after ``%u``, outside a
    stream); also the access token (``token``, hidden in the ``repr``)."""

    pairs: OptionPairs = ()

    def __repr__(self) -> str:
        return f"Options(pairs={redact_pairs(self.pairs)!r})"


# ---------------------------------------------------------------- server -> client packets


@dataclass(frozen=True)
class Welcome:
    """``%L``: answer to ``%u``."""

    message: str = "Welcome!"


ResultFields = tuple[tuple[str, str], ...]
"""Optional ``%R`` fields in order: ``(key, value)``; key ``[a-z][a-z0-9_]*``, value printable ASCII without spaces."""

_FIELD_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
_FIELD_VALUE = re.compile(r"[!-~]*\Z")


@dataclass(frozen=True)
class Result:
    """``%R``: a final hypothesis for one utterance.

    ``start_s``/``end_s`` are seconds since the stream's ``%b`` (sent with one decimal).
    ``fields``: sent after a tab as ``key=value`` tokens (:data:`ResultFields`); empty: the
    original bytes.
    """

    start_s: float
    end_s: float
    text: str
    fields: ResultFields = ()


@dataclass(frozen=True)
class Partial:
    """``%P``: a partial hypothesis of the utterance in progress (only to a stream that asked
    for them with ``%o partials=1``).

    Data ``start end : STABLE<TAB>UNSTABLE`` (UTF-8, times with one decimal like ``%R``):
    ``start_s`` the utterance's start (the same as its later ``%R``), ``end_s`` the end of the
    audio this hypothesis covers, ``stable`` the committed prefix (within one utterance each
    ``%P``'s ``stable`` starts with the previous one's), ``unstable`` the rest of the newest
    decode.  Both empty: the utterance ended with no text (clear the line).  The utterance's
    ``%R`` supersedes its partials.
    """

    start_s: float
    end_s: float
    stable: str
    unstable: str


@dataclass(frozen=True)
class Error:
    """``%E``: error reason (ASCII, e.g. ``SERVER_TOO_BUSY``); the server closes afterwards."""

    reason: str


@dataclass(frozen=True)
class Finished:
    """``%F``: every result of the stream has been sent."""


@dataclass(frozen=True)
class Status:
    """``%C``: status text, one ``key: value`` line per item."""

    text: str


@dataclass(frozen=True)
class OptionsAccepted:
    """``%O``: answer to ``%o``: each known key with its effective value (unknown keys left out)."""

    pairs: OptionPairs = ()


@dataclass(frozen=True)
class Summary:
    """``%S``: statistics of the stream that ends with the next ``%F`` (one ``key: value`` per line)."""

    text: str


ClientPacket = Union[UserId, Begin, Audio, Finish, StatusRequest, Options]
ServerPacket = Union[Welcome, Result, Partial, Error, Finished, Status, OptionsAccepted, Summary]
Packet = Union[ClientPacket, ServerPacket]

_CODE_OF: dict[type, bytes] = {
    UserId: b"%u",
    Begin: b"%b",
    Audio: b"%s",
    Finish: b"%f",
    StatusRequest: b"%c",
    Options: b"%o",
    Welcome: b"%L",
    Result: b"%R",
    Partial: b"%P",
    Error: b"%E",
    Finished: b"%F",
    Status: b"%C",
    OptionsAccepted: b"%O",
    Summary: b"%S",
}
_ACCEPTED: dict[Role, frozenset[bytes]] = {
    Role.SERVER: frozenset({b"%u", b"%b", b"%s", b"%f", b"%c", b"%o"}),
    Role.CLIENT: frozenset({b"%L", b"%R", b"%P", b"%E", b"%F", b"%C", b"%O", b"%S"}),
}
_EMPTY = {b"%b": Begin(), b"%f": Finish(), b"%c": StatusRequest(), b"%F": Finished()}


def format_result_text(start_s: float, end_s: float, text: str) -> str:
    """``"start end : text"`` with one decimal, the ``%R`` data format (without the optional field)."""
    return f"{start_s:.1f} {end_s:.1f} : {text}"


def format_fields(fields: ResultFields) -> str:
    """The ``%R`` field text, without its leading tab: ``key=value`` tokens joined by spaces.

    Raises:
        UsageError: a key or value breaking :data:`ResultFields`' rules.
    """
    for key, value in fields:
        if not _FIELD_KEY.match(key) or not _FIELD_VALUE.match(value) or "=" in value:
            raise UsageError(f"bad result field {key!r}={value!r}")
    return " ".join(f"{key}={value}" for key, value in fields)


def _ascii(text: str) -> bytes:
    return text.encode("ascii", "replace")


def encode_packet(packet: Packet, *, length_encoding: str = "hex") -> bytes:
    """Serialize one packet to wire bytes, its length in ``length_encoding`` (:data:`LENGTH_ENCODINGS`).

    ``Result`` text that would not fit in the longest data field (65535 bytes hex, 9999 decimal)
    is cut at a UTF-8 character boundary.

    Raises:
        UsageError: unknown packet type or length encoding, a data field too long for it (other
            than ``Result``), or a user id breaking the ``%u`` rules.
    """
    _check_length_encoding(length_encoding)
    limit = max_data_bytes(length_encoding)
    try:
        code = _CODE_OF[type(packet)]
    except KeyError:
        raise UsageError(f"not a packet: {packet!r}") from None
    if isinstance(packet, Audio):
        data = bytes(packet.pcm)
    elif isinstance(packet, UserId):
        _check_user_id(packet.user_id, UsageError)
        data = packet.user_id.encode("utf-8")
    elif isinstance(packet, Result):
        data = format_result_text(packet.start_s, packet.end_s, sanitize_text(packet.text)).encode("utf-8")
        tail = b"\t" + format_fields(packet.fields).encode("ascii") if packet.fields else b""
        if len(data) + len(tail) > limit:
            data = data[: limit - len(tail)].decode("utf-8", "ignore").encode("utf-8")
        data += tail
    elif isinstance(packet, Partial):
        stable, unstable = sanitize_text(packet.stable), sanitize_text(packet.unstable)
        data = format_result_text(packet.start_s, packet.end_s, stable).encode("utf-8")
        tail = b"\t" + unstable.encode("utf-8")
        if len(data) + len(tail) > limit:  # keep the stable part whole; cut the unstable tail
            tail = tail[: max(1, limit - len(data))].decode("utf-8", "ignore").encode("utf-8")
        data += tail
    elif isinstance(packet, (Options, OptionsAccepted)):
        text = format_pairs(packet.pairs)
        try:
            if parse_pairs(text) != tuple(packet.pairs):
                raise RemoteProtocolError(ErrorReason.BAD_OPTION, "keys or values would not survive the round trip")
        except RemoteProtocolError as exc:
            raise UsageError(f"bad options {redact_pairs(packet.pairs)!r}: {exc.detail}") from None
        data = text.encode("utf-8")
    elif isinstance(packet, Summary):
        data = packet.text.encode("utf-8")
    elif isinstance(packet, Welcome):
        data = packet.message.encode("utf-8")
    elif isinstance(packet, Error):
        data = _ascii(packet.reason)
    elif isinstance(packet, Status):
        data = packet.text.encode("utf-8")
    else:
        data = b""
    if len(data) > limit:
        raise UsageError(f"{code.decode()} data of {len(data)} bytes exceeds {limit}")
    return code + (b"%04X" if length_encoding == "hex" else b"%04d") % len(data) + data


def _check_user_id(user_id: str, exc: type[Exception]) -> None:
    if not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise _make(exc, ErrorReason.BAD_USER_ID, f"user id must have 1-{MAX_USER_ID_CHARS} characters, got {len(user_id)}")
    if any(is_unsafe_in_ids(ch) for ch in user_id):
        raise _make(exc, ErrorReason.BAD_USER_ID, "user id contains control characters, line separators or bidi controls")


def _make(exc: type[Exception], reason: ErrorReason, detail: str) -> Exception:
    if issubclass(exc, RemoteProtocolError):
        return exc(reason, detail)
    return exc(f"{reason}: {detail}")


class PacketDecoder:
    """Incremental decoder: feed bytes with :meth:`receive_data`, pull packets with :meth:`next_packet`.

    Args:
        role: ``Role.SERVER`` accepts the client's packets (``%u %b %s %f %c %o``);
            ``Role.CLIENT`` accepts the server's (``%L %R %P %E %F %C %O %S``).
        expect_magic: require the 22-byte handshake before the first packet (default: true
            for the server role).  A wrong byte fails at once, before 22 bytes arrived.
        length_encoding: how the 4 length digits are read (:data:`LENGTH_ENCODINGS`).

    Buffering is bounded by what the transport feeds between pulls plus one packet
    (at most 6 + 65535 bytes): drain :meth:`next_packet` before feeding more.

    Raises (from :meth:`next_packet` / :meth:`receive_data`, sticky):
        HandshakeError: bad magic (reason ``BAD_MAGIC``; close without reply).
        RemoteProtocolError: ``UNKNOWN_HEADER``, ``BAD_LENGTH``,
            ``BAD_USER_ID``, ``UNEXPECTED_DATA``, ``BAD_OPTION``, ``BAD_RESULT``, ``BAD_TEXT``,
            ``TRUNCATED`` (EOF inside a packet, from :meth:`receive_eof`).
    """

    def __init__(self, role: Role, *, expect_magic: bool | None = None, length_encoding: str = "hex") -> None:
        _check_length_encoding(length_encoding)
        self.role = role
        self._decimal = length_encoding == "decimal"
        self._accepted = _ACCEPTED[role]
        self._magic_pending = (role is Role.SERVER) if expect_magic is None else expect_magic
        self._buf = bytearray()
        self._pos = 0
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self.bytes_received = 0

    @property
    def handshake_done(self) -> bool:
        """True once the magic string has been received (or was not expected)."""
        return not self._magic_pending

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as packets."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        """Append bytes that arrived from the peer.

        Raises:
            UsageError: data after :meth:`receive_eof`.
            HandshakeError: the bytes so far cannot be the magic string.
        """
        if self._error is not None:
            raise self._error
        if self._eof:
            raise UsageError("receive_data after receive_eof")
        self.bytes_received += len(data)
        self._buf += data
        if self._magic_pending:
            self._check_magic()

    def receive_eof(self) -> None:
        """The peer closed its side.

        Raises:
            RemoteProtocolError: ``TRUNCATED`` if a partial packet (or handshake) is buffered.
        """
        self._eof = True
        if self._error is None and self.buffered_bytes:
            self._fail(RemoteProtocolError(ErrorReason.TRUNCATED, f"connection closed inside a packet ({self.buffered_bytes} bytes pending)"))
            raise self._error  # type: ignore[misc]

    def next_packet(self) -> Packet | None:
        """Return the next complete packet, or ``None`` if more bytes are needed."""
        if self._error is not None:
            raise self._error
        if self._magic_pending:
            return None
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_BYTES:
            self._compact()
            return None
        code = bytes(buf[pos : pos + 2])
        if code not in self._accepted:
            self._fail(RemoteProtocolError(ErrorReason.UNKNOWN_HEADER, f"unknown packet header 0x{code.hex()}"))
        length_field = bytes(buf[pos + 2 : pos + HEADER_BYTES])
        if not (_DECIMAL if self._decimal else _HEX).match(length_field):
            kind = "decimal" if self._decimal else "hex"
            self._fail(RemoteProtocolError(ErrorReason.BAD_LENGTH, f"length field 0x{length_field.hex()} is not 4 {kind} digits"))
        end = pos + HEADER_BYTES + int(length_field, 10 if self._decimal else 16)
        if len(buf) < end:
            self._compact()
            return None
        data = bytes(buf[pos + HEADER_BYTES : end])
        self._pos = end
        try:
            return self._parse(code, data)
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise AssertionError("unreachable")  # pragma: no cover

    def packets(self) -> list[Packet]:
        """Every complete packet buffered now (drains :meth:`next_packet`)."""
        out: list[Packet] = []
        while (packet := self.next_packet()) is not None:
            out.append(packet)
        return out

    # ------------------------------------------------------------------ internals

    def _fail(self, exc: RemoteProtocolError) -> None:
        self._error = exc
        raise exc

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _check_magic(self) -> None:
        n = min(len(self._buf), len(MAGIC))
        if bytes(self._buf[:n]) != MAGIC[:n]:
            self._fail(HandshakeError())
        if n == len(MAGIC):
            del self._buf[: len(MAGIC)]
            self._magic_pending = False

    def _parse(self, code: bytes, data: bytes) -> Packet:
        if code == b"%s":
            return Audio(data)  # the session checks the length against the stream's encoding
        if code in _EMPTY:
            if data:
                raise RemoteProtocolError(ErrorReason.UNEXPECTED_DATA, f"{code.decode()} carries no data, got {len(data)} bytes")
            return _EMPTY[code]
        if code == b"%u":
            try:
                user_id = data.decode("utf-8")
            except UnicodeDecodeError:
                raise RemoteProtocolError(ErrorReason.BAD_USER_ID, "user id is not valid UTF-8") from None
            _check_user_id(user_id, RemoteProtocolError)
            return UserId(user_id)
        if code == b"%E":
            return Error(data.decode("ascii", "replace"))
        if code in (b"%o", b"%O"):
            try:
                pairs = parse_pairs(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise RemoteProtocolError(ErrorReason.BAD_OPTION, "options are not valid UTF-8") from None
            return Options(pairs) if code == b"%o" else OptionsAccepted(pairs)
        text = self._text(code, data)
        if code == b"%L":
            return Welcome(text)
        if code == b"%C":
            return Status(text)
        if code == b"%S":
            return Summary(text)
        if code == b"%P":
            return _parse_partial(text)
        return _parse_result(text)

    @staticmethod
    def _text(code: bytes, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(ErrorReason.BAD_TEXT, f"{code.decode()} data is not valid UTF-8") from None


def _parse_result(text: str) -> Result:
    times, sep, body = text.partition(" : ")
    parts = times.split(" ")
    if not sep or len(parts) != 2:
        raise RemoteProtocolError(ErrorReason.BAD_RESULT, "result is not 'start end : text'")
    fields: ResultFields = ()
    head, tab, tail = body.rpartition("\t")
    if tab and (parsed := _parse_fields(tail)) is not None:
        body, fields = head, parsed
    try:
        return Result(float(parts[0]), float(parts[1]), body, fields)
    except ValueError:
        raise RemoteProtocolError(ErrorReason.BAD_RESULT, "result times are not numbers") from None


def _parse_partial(text: str) -> Partial:
    times, sep, body = text.partition(" : ")
    parts = times.split(" ")
    stable, tab, unstable = body.partition("\t")
    if not sep or len(parts) != 2 or not tab:
        raise RemoteProtocolError(ErrorReason.BAD_RESULT, "partial is not 'start end : stable<TAB>unstable'")
    try:
        return Partial(float(parts[0]), float(parts[1]), stable, unstable)
    except ValueError:
        raise RemoteProtocolError(ErrorReason.BAD_RESULT, "partial times are not numbers") from None


def _parse_fields(tail: str) -> ResultFields | None:
    """``key=value`` tokens after the tab; None when the tail is not fields (an old server's text with a tab)."""
    tokens = [t for t in tail.split(" ") if t]
    pairs = [t.partition("=") for t in tokens]
    if not tokens or any(not sep or not _FIELD_KEY.match(key) or not _FIELD_VALUE.match(value) for key, sep, value in pairs):
        return None
    return tuple((key, value) for key, _, value in pairs)
