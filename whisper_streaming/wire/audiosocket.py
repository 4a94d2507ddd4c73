"""Sans-IO codec for Asterisk's AudioSocket protocol (the ``AudioSocket()`` dialplan application).

No sockets here, in the style of :mod:`~whisper_streaming.wire.protocol`: bytes in, typed events out
(:class:`AudioSocketDecoder`); frames out (:func:`encode_frame` and the ``*_frame`` helpers).
Asterisk connects to us, sends the call's UUID first, then audio frames (typically 20 ms each),
DTMF digits and finally a hangup frame, or just closes the socket.

Wire format: every frame is ``kind`` (1 byte) | ``length`` (2 bytes, big-endian, unsigned) |
``payload`` (``length`` bytes)::

    0x00 HANGUP     no payload; closing the socket is equivalent
    0x01 UUID       16 bytes, the binary form of the call's UUID (RFC 4122 byte order); first frame
    0x03 DTMF       1 ASCII byte, the digit (0-9, *, #, A-D)
    0x10 AUDIO_8K   signed 16-bit little-endian mono PCM at 8 kHz
    0x11-0x18       the same PCM at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz
    0xFF ERROR      optional application-specific code; Asterisk's are one bit-packed byte:
                    0x01 hangup of calling party, 0x02 frame forwarding error, 0x04 memory error

Verified (for issue 7), with the sources read:

* Kinds 0x00, 0x01, 0x03, 0x10, 0xFF: ``enum ast_audiosocket_msg_kind`` in Asterisk's
  ``include/asterisk/res_audiosocket.h``; ``ast_audiosocket_init`` in ``res/res_audiosocket.c``
  writes ``0x01 0x00 0x10`` + the 16 bytes of ``uuid_parse()``; ``ast_audiosocket_send_frame``
  writes the length with ``htons`` (big-endian) and a DTMF frame as one byte,
  ``(uint8_t) f->subclass.integer`` (the ASCII digit).
* Higher rates: the current ``res/res_audiosocket.c`` maps ``AST_AUDIOSOCKET_KIND_AUDIO_SLIN12``
  ... ``_SLIN192`` to ``ast_format_slin12`` ... ``slin192`` both ways (sending: the kind follows the
  frame's format).  Their numbers are those of Asterisk pull request #1492 ("res_audiosocket: add
  message types for all slin sample rates", merged 2025-10, "types 0x11 - 0x18 ... slin12, slin16,
  slin24, slin32, slin44, slin48, slin96, and slin192") and of the protocol page
  ``docs/Configuration/Channel-Drivers/AudioSocket.md`` / the CyCoreSystems/audiosocket README:
  0x11 12 kHz, **0x12 16 kHz**, 0x13 24 kHz, 0x14 32 kHz, 0x15 44.1 kHz, 0x16 48 kHz, 0x17 96 kHz,
  0x18 192 kHz.  Beware: the PR's first draft (and a ``res_audiosocket.h`` of that time) had
  ``AST_AUDIOSOCKET_KIND_AUDIO_SLIN16 = 0x11``; the merged numbering above replaced it.  Older
  Asterisk (before that PR) sends 0x10 whatever the channel's slin rate.
* Error codes: the CyCoreSystems/audiosocket README ("Asterisk error codes ... single-byte,
  bit-packed") and ``audiosocket.go`` (``ErrAstHangup = 0x01``, ``ErrAstFrameForwarding = 0x02``,
  ``ErrAstMemory = 0x04``).

Decoder rules (violations raise :class:`~whisper_streaming.errors.RemoteProtocolError`, sticky:
every later call raises the same error; they end that one call's connection):

====================== =====================================================================
reason                 cause
====================== =====================================================================
``UUID_NOT_FIRST``     the first frame is not a UUID frame
``UUID_REPEATED``      a second UUID frame
``BAD_UUID_LENGTH``    a UUID payload that is not 16 bytes
``UNKNOWN_KIND``       a kind not in :class:`Kind` (checked from the header, before the payload)
``FRAME_TOO_LARGE``    a length over ``max_payload`` (checked from the header, before buffering)
``ODD_PCM_LENGTH``     an audio payload with an odd byte count
``BAD_DTMF``           a DTMF payload that is not exactly one of ``0-9 * # A-D``
``UNEXPECTED_DATA``    a hangup frame with a payload
``DATA_AFTER_HANGUP``  any byte after the hangup frame
``TRUNCATED``          end of stream inside a frame (after :meth:`AudioSocketDecoder.receive_eof`)
====================== =====================================================================
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Final, Iterator, NoReturn, Union

from whisper_streaming.errors import ErrorReason, RemoteProtocolError, UsageError

__all__ = [
    "HEADER_BYTES",
    "MAX_WIRE_PAYLOAD",
    "DEFAULT_MAX_PAYLOAD",
    "DTMF_DIGITS",
    "ASTERISK_ERROR_HANGUP",
    "ASTERISK_ERROR_FRAME_FORWARDING",
    "ASTERISK_ERROR_MEMORY",
    "Kind",
    "AUDIO_KIND_RATES",
    "audio_kind_for_rate",
    "CallStarted",
    "AudioFrame",
    "Dtmf",
    "Hangup",
    "RemoteError",
    "Event",
    "AudioSocketDecoder",
    "encode_frame",
    "encode_event",
    "uuid_frame",
    "audio_frame",
    "audio_frames",
    "dtmf_frame",
    "hangup_frame",
    "error_frame",
]

HEADER_BYTES: Final = 3
"""1 byte kind + 2 bytes big-endian payload length."""
MAX_WIRE_PAYLOAD: Final = 0xFFFF
"""Largest payload the 16-bit length can express (65535 bytes)."""
DEFAULT_MAX_PAYLOAD: Final = 32768
"""Default decoder limit: 32 KiB is over 1 s of 16 kHz PCM (Asterisk sends 20 ms frames:
320 bytes at 8 kHz, 640 at 16 kHz, 7680 at 192 kHz)."""
DTMF_DIGITS: Final = "0123456789*#ABCD"

ASTERISK_ERROR_HANGUP: Final = 0x01
"""Error-frame bit: hangup of the calling party."""
ASTERISK_ERROR_FRAME_FORWARDING: Final = 0x02
"""Error-frame bit: Asterisk could not forward a frame."""
ASTERISK_ERROR_MEMORY: Final = 0x04
"""Error-frame bit: Asterisk ran out of memory."""


class Kind(enum.IntEnum):
    """Frame kinds (``enum ast_audiosocket_msg_kind``; see the module docstring for sources)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO_8K = 0x10
    AUDIO_12K = 0x11
    AUDIO_16K = 0x12
    AUDIO_24K = 0x13
    AUDIO_32K = 0x14
    AUDIO_44K = 0x15
    AUDIO_48K = 0x16
    AUDIO_96K = 0x17
    AUDIO_192K = 0x18
    ERROR = 0xFF


AUDIO_KIND_RATES: Final[dict[Kind, int]] = {
    Kind.AUDIO_8K: 8000,
    Kind.AUDIO_12K: 12000,
    Kind.AUDIO_16K: 16000,
    Kind.AUDIO_24K: 24000,
    Kind.AUDIO_32K: 32000,
    Kind.AUDIO_44K: 44100,
    Kind.AUDIO_48K: 48000,
    Kind.AUDIO_96K: 96000,
    Kind.AUDIO_192K: 192000,
}
"""Sample rate in Hz of each audio kind (all are s16le mono)."""
_KIND_OF_RATE: Final = {rate: kind for kind, rate in AUDIO_KIND_RATES.items()}
_KINDS: Final = frozenset(int(k) for k in Kind)


def audio_kind_for_rate(sample_rate_hz: int) -> Kind:
    """The audio kind carrying ``sample_rate_hz`` (8000 -> 0x10, 16000 -> 0x12, ...).

    Raises:
        UsageError: a rate AudioSocket has no kind for.
    """
    try:
        return _KIND_OF_RATE[sample_rate_hz]
    except KeyError:
        rates = ", ".join(str(r) for r in _KIND_OF_RATE)
        raise UsageError(f"AudioSocket has no audio kind for {sample_rate_hz} Hz (one of {rates})") from None


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class CallStarted:
    """The UUID frame (always the first event of a call)."""

    uuid: uuid.UUID


@dataclass(frozen=True)
class AudioFrame:
    """PCM: signed 16-bit little-endian mono at ``sample_rate_hz``; an even byte count."""

    pcm: bytes
    sample_rate_hz: int = 8000

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration_s(self) -> float:
        """Seconds of audio in this frame."""
        return self.sample_count / self.sample_rate_hz


@dataclass(frozen=True)
class Dtmf:
    """One DTMF digit, one of ``0123456789*#ABCD``."""

    digit: str


@dataclass(frozen=True)
class Hangup:
    """The hangup frame: the call ended; nothing may follow."""


@dataclass(frozen=True)
class RemoteError:
    """An error frame.  ``code``: the first payload byte (0 for an empty payload); for Asterisk a
    bit set of ``ASTERISK_ERROR_*``.  ``payload``: the whole payload, as sent."""

    code: int
    payload: bytes = b""


Event = Union[CallStarted, AudioFrame, Dtmf, Hangup, RemoteError]


# ---------------------------------------------------------------- encoding


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame: ``kind`` byte, big-endian 16-bit length, ``payload``.

    ``kind`` may be any byte (tests send unknown kinds on purpose).

    Raises:
        UsageError: ``kind`` outside 0-255, or a payload over 65535 bytes.
    """
    if not 0 <= int(kind) <= 0xFF:
        raise UsageError(f"AudioSocket kind must be a byte, got {kind}")
    payload = bytes(payload)
    if len(payload) > MAX_WIRE_PAYLOAD:
        raise UsageError(f"AudioSocket payload of {len(payload)} bytes exceeds {MAX_WIRE_PAYLOAD}")
    return bytes((int(kind), len(payload) >> 8, len(payload) & 0xFF)) + payload


def uuid_frame(call_id: uuid.UUID | str) -> bytes:
    """The first frame of a call: the UUID's 16 bytes (``str`` is parsed as a UUID)."""
    if isinstance(call_id, str):
        call_id = uuid.UUID(call_id)
    return encode_frame(Kind.UUID, call_id.bytes)


def audio_frame(pcm: bytes, sample_rate_hz: int = 8000) -> bytes:
    """One audio frame of s16le mono PCM at ``sample_rate_hz``.

    Raises:
        UsageError: odd byte count, a rate without a kind, or more than 65535 bytes.
    """
    if len(pcm) % 2:
        raise UsageError(f"PCM s16le needs an even byte count, got {len(pcm)}")
    return encode_frame(audio_kind_for_rate(sample_rate_hz), pcm)


def audio_frames(pcm: bytes, sample_rate_hz: int = 8000, frame_ms: int = 20) -> Iterator[bytes]:
    """Split ``pcm`` into frames of ``frame_ms`` (the last may be shorter), as Asterisk sends them.

    Raises:
        UsageError: as :func:`audio_frame`, or ``frame_ms`` not positive or too long for one frame.
    """
    if len(pcm) % 2:
        raise UsageError(f"PCM s16le needs an even byte count, got {len(pcm)}")
    step = sample_rate_hz * frame_ms // 1000 * 2
    if frame_ms <= 0 or not 2 <= step <= MAX_WIRE_PAYLOAD:
        raise UsageError(f"frame_ms={frame_ms} gives {step}-byte frames")
    kind = audio_kind_for_rate(sample_rate_hz)
    for start in range(0, len(pcm), step):
        yield encode_frame(kind, pcm[start : start + step])


def dtmf_frame(digit: str) -> bytes:
    """A DTMF frame for one of ``0123456789*#ABCD``.

    Raises:
        UsageError: anything else.
    """
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise UsageError(f"not a DTMF digit: {digit!r}")
    return encode_frame(Kind.DTMF, digit.encode("ascii"))


def hangup_frame() -> bytes:
    """``00 00 00``."""
    return encode_frame(Kind.HANGUP)


def error_frame(code: int | None = ASTERISK_ERROR_HANGUP) -> bytes:
    """An error frame with a one-byte code (``None``: empty payload)."""
    return encode_frame(Kind.ERROR, b"" if code is None else bytes((code,)))


def encode_event(event: Event) -> bytes:
    """The frame for a decoded event (the decoder's inverse).

    Raises:
        UsageError: not an event, or an event the helpers refuse.
    """
    if isinstance(event, CallStarted):
        return uuid_frame(event.uuid)
    if isinstance(event, AudioFrame):
        return audio_frame(event.pcm, event.sample_rate_hz)
    if isinstance(event, Dtmf):
        return dtmf_frame(event.digit)
    if isinstance(event, Hangup):
        return hangup_frame()
    if isinstance(event, RemoteError):
        payload = event.payload or (bytes((event.code,)) if event.code else b"")
        return encode_frame(Kind.ERROR, payload)
    raise UsageError(f"not an AudioSocket event: {event!r}")


# ---------------------------------------------------------------- decoding


class AudioSocketDecoder:
    """Incremental decoder: :meth:`receive_data` what arrived, pull :meth:`next_event` until ``None``.

    Args:
        max_payload: largest accepted payload in bytes (1-65535); a header announcing more fails
            with ``FRAME_TOO_LARGE`` at once, before any of the payload is buffered.

    Buffering is bounded by what the transport feeds between pulls plus one frame (at most
    3 + ``max_payload`` bytes): drain :meth:`next_event` before feeding more.

    Raises (sticky; see the module docstring for the reasons):
        RemoteProtocolError: from :meth:`receive_data`, :meth:`next_event`, :meth:`receive_eof`.
        UsageError: :meth:`receive_data` after :meth:`receive_eof` (our bug, not the peer's).
    """

    def __init__(self, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= MAX_WIRE_PAYLOAD:
            raise UsageError(f"max_payload must be 1-{MAX_WIRE_PAYLOAD}, got {max_payload}")
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0
        self._error: RemoteProtocolError | None = None
        self._eof = False
        self._uuid: uuid.UUID | None = None
        self._hung_up = False
        self.bytes_received = 0
        self.frames_decoded = 0

    @property
    def call_id(self) -> uuid.UUID | None:
        """The call's UUID once its frame was decoded."""
        return self._uuid

    @property
    def hung_up(self) -> bool:
        """True once the hangup frame was returned."""
        return self._hung_up

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as events."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        """Append bytes from Asterisk.

        Raises:
            RemoteProtocolError: ``DATA_AFTER_HANGUP`` (non-empty data after the hangup frame
                was returned), or the sticky error; a bad header is reported here at once.
            UsageError: after :meth:`receive_eof`.
        """
        if self._error is not None:
            raise self._error
        if self._eof:
            raise UsageError("receive_data after receive_eof")
        if not data:
            return
        if self._hung_up:
            self._fail(ErrorReason.DATA_AFTER_HANGUP, f"{len(data)} bytes after the hangup frame")
        self.bytes_received += len(data)
        self._buf += data
        self._check_header()

    def receive_eof(self) -> None:
        """Asterisk closed its side (by itself a hangup, when it comes between frames).

        Complete frames still buffered stay available from :meth:`next_event`; a partial frame
        after them raises ``TRUNCATED`` from :meth:`next_event` when it is reached, and here at
        once when nothing complete precedes it.

        Raises:
            RemoteProtocolError: ``TRUNCATED``, or the sticky error.
        """
        if self._error is not None:
            raise self._error
        self._eof = True
        if self.buffered_bytes and not self._hung_up and not self._frame_buffered():
            self._truncated()

    def next_event(self) -> Event | None:
        """The next complete event, or ``None`` when more bytes are needed."""
        if self._error is not None:
            raise self._error
        if self._hung_up:
            if self.buffered_bytes:
                self._fail(ErrorReason.DATA_AFTER_HANGUP, f"{self.buffered_bytes} bytes after the hangup frame")
            return None
        if not self._check_header() or not self._frame_buffered():
            if self._eof and self.buffered_bytes:
                self._truncated()
            self._compact()
            return None
        buf, pos = self._buf, self._pos
        kind = buf[pos]
        end = pos + HEADER_BYTES + ((buf[pos + 1] << 8) | buf[pos + 2])
        payload = bytes(buf[pos + HEADER_BYTES : end])
        self._pos = end
        event = self._parse(Kind(kind), payload)
        self.frames_decoded += 1
        return event

    def events(self) -> list[Event]:
        """Every complete event buffered now (drains :meth:`next_event`)."""
        out: list[Event] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out

    # ------------------------------------------------------------------ internals

    def _fail(self, reason: ErrorReason, detail: str) -> NoReturn:
        self._error = RemoteProtocolError(reason, detail)
        raise self._error

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _truncated(self) -> NoReturn:
        self._fail(ErrorReason.TRUNCATED, f"connection closed inside a frame ({self.buffered_bytes} bytes pending)")

    def _frame_buffered(self) -> bool:
        """True when the next frame is buffered whole."""
        if self.buffered_bytes < HEADER_BYTES:
            return False
        pos = self._pos
        return self.buffered_bytes >= HEADER_BYTES + ((self._buf[pos + 1] << 8) | self._buf[pos + 2])

    def _check_header(self) -> bool:
        """Validate the next frame's header as soon as it is buffered; True if one is buffered."""
        if self._hung_up or self.buffered_bytes < 1:
            return False
        kind = self._buf[self._pos]
        if kind not in _KINDS:
            self._fail(ErrorReason.UNKNOWN_KIND, f"unknown AudioSocket kind 0x{kind:02x}")
        if self._uuid is None and kind != Kind.UUID:
            self._fail(ErrorReason.UUID_NOT_FIRST, f"first frame is kind 0x{kind:02x}, not the UUID (0x01)")
        if self.buffered_bytes < HEADER_BYTES:
            return False
        length = (self._buf[self._pos + 1] << 8) | self._buf[self._pos + 2]
        if length > self.max_payload:
            self._fail(ErrorReason.FRAME_TOO_LARGE, f"kind 0x{kind:02x} announces {length} bytes, limit {self.max_payload}")
        return True

    def _parse(self, kind: Kind, payload: bytes) -> Event:
        if kind == Kind.UUID:
            if self._uuid is not None:
                self._fail(ErrorReason.UUID_REPEATED, "a second UUID frame")
            if len(payload) != 16:
                self._fail(ErrorReason.BAD_UUID_LENGTH, f"UUID payload of {len(payload)} bytes, expected 16")
            self._uuid = uuid.UUID(bytes=payload)
            return CallStarted(self._uuid)
        rate = AUDIO_KIND_RATES.get(kind)
        if rate is not None:
            if len(payload) % 2:
                self._fail(ErrorReason.ODD_PCM_LENGTH, f"PCM s16le needs an even byte count, got {len(payload)}")
            return AudioFrame(payload, rate)
        if kind == Kind.DTMF:
            digit = payload.decode("latin-1")
            if len(digit) != 1 or digit not in DTMF_DIGITS:
                self._fail(ErrorReason.BAD_DTMF, f"DTMF payload 0x{payload[:8].hex()} is not one digit of {DTMF_DIGITS}")
            return Dtmf(digit)
        if kind == Kind.HANGUP:
            if payload:
                self._fail(ErrorReason.UNEXPECTED_DATA, f"hangup frame carries {len(payload)} bytes")
            self._hung_up = True
            return Hangup()
        # Kind.ERROR (every other kind was refused by _check_header)
        return RemoteError(payload[0] if payload else 0, payload)
