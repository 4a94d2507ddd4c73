"""G.711 mu-law and A-law codecs (ITU-T Recommendation G.711), vectorized with numpy.

Telephony audio arrives as 8-bit G.711 code words at 8 kHz; the pipeline wants signed 16-bit
linear PCM.  Decoding is one lookup in a 256-entry table per byte; encoding (for tests and for a
client that sends G.711 files) is one lookup in a 65536-entry table per sample.  All four tables
are built once at import, from the standard's segment/quantization algorithm, by vectorized numpy
over every possible input (no per-sample Python loop, then or later).  Python's ``audioop`` is not
used (deprecated in 3.11, removed in 3.13).

Shapes, dtypes, units:

* G.711 data: ``bytes``-like, one code word (uint8) per sample.
* Linear PCM: ``numpy.ndarray`` of dtype ``int16`` (native byte order), shape ``(n,)``, full-scale
  16-bit units (the 14-bit mu-law and 13-bit A-law ranges scaled up by 4 and 8).  Encoders also
  take s16le ``bytes`` (the wire format of ``%s`` and AudioSocket).
* Decoding and encoding preserve the sample count: ``len(ulaw_decode(b)) == len(b)``.

Values (checked in ``tests/test_g711.py``):

* mu-law: ``0xFF -> 0``, ``0x7F -> 0`` (negative zero), ``0x00 -> -32124``, ``0x80 -> 32124``.
* A-law: ``0xD5 -> 8``, ``0x55 -> -8``, ``0x2A -> -32256``, ``0xAA -> 32256``.
* The encoders pick, for every int16 input, one of the two decoder levels that bracket it (the
  largest level for inputs beyond it), so ``decode(encode(x))`` is within one quantization step.

Sources: ITU-T G.711 (11/1988) tables 1a/1b and 2a/2b (segment end points, the even-bit
inversion ``^ 0x55`` of A-law and the all-bit inversion of mu-law); the algorithm as written in
Sun Microsystems' public-domain ``g711.c`` (``ulaw2linear``, ``alaw2linear``, ``linear2ulaw``,
``linear2alaw``), which SoX and CPython's ``Modules/audioop.c`` carry (``_st_ulaw2linear16``,
``_st_alaw2linear16``, ``st_14linear2ulaw``, ``st_linear2alaw``; read there: BIAS 0x84, CLIP
32635, ``seg_uend``/``seg_aend``).  The tests compare these tables, entry by entry, with values
copied from CPython's tables, and with ``audioop`` itself where the interpreter still has it.

Errors: :class:`~whisper_streaming.errors.UsageError` for an odd s16le byte count, a non-integer
array, integer samples outside the int16 range, or an unknown encoding name.
"""

from __future__ import annotations

from typing import Final, Union

import numpy as np
import numpy.typing as npt

from whisper_streaming.errors import UsageError

__all__ = [
    "ENCODINGS",
    "PCM_S16LE",
    "MULAW",
    "ALAW",
    "ULAW_DECODE_TABLE",
    "ALAW_DECODE_TABLE",
    "ulaw_decode",
    "alaw_decode",
    "ulaw_encode",
    "alaw_encode",
    "decode_samples",
    "encode_samples",
    "bytes_per_sample",
]

PCM_S16LE: Final = "pcm_s16le"
MULAW: Final = "mulaw"
ALAW: Final = "alaw"
ENCODINGS: Final = (PCM_S16LE, MULAW, ALAW)
"""Encoding names of issue 7's per-session audio format option."""

BytesLike = Union[bytes, bytearray, memoryview]
Samples = Union[BytesLike, npt.NDArray[np.integer]]

# ITU-T G.711 / Sun g711.c constants.
_BIAS: Final = 0x84  # mu-law bias for 16-bit samples (33 in the 14-bit domain)
_SIGN_BIT: Final = 0x80
_QUANT_MASK: Final = 0x0F
_SEG_SHIFT: Final = 4
_SEG_MASK: Final = 0x70
# Segment end points of the biased 14-bit mu-law magnitude and of the 13-bit A-law magnitude.
_SEG_UEND: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF  # mu-law code words are sent complemented
    t = ((u & _QUANT_MASK) << 3) + _BIAS
    t <<= (u & _SEG_MASK) >> _SEG_SHIFT
    return np.where(u & _SIGN_BIT, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55  # even-bit inversion
    t = (a & _QUANT_MASK) << 4
    seg = (a & _SEG_MASK) >> _SEG_SHIFT
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & _SIGN_BIT, t, -t).astype(np.int16)


_ALL_INT16: Final = np.arange(-32768, 32768, dtype=np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    """Code word for every int16 value, indexed by ``value + 32768``."""
    x = _ALL_INT16 >> 2  # 14-bit two's complement
    negative = x < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 32635) + (_BIAS >> 2)  # CLIP never bites in 14 bits
    seg = np.searchsorted(_SEG_UEND, magnitude, side="left")  # first end point >= magnitude
    uval = (seg << 4) | ((magnitude >> np.minimum(seg + 1, 8)) & _QUANT_MASK)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    """Code word for every int16 value, indexed by ``value + 32768``."""
    x = _ALL_INT16 >> 3  # 13-bit two's complement
    negative = x < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -x - 1, x)
    seg = np.searchsorted(_SEG_AEND, magnitude, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 8))
    aval = (np.minimum(seg, 7) << _SEG_SHIFT) | ((magnitude >> shift) & _QUANT_MASK)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


ULAW_DECODE_TABLE: Final[npt.NDArray[np.int16]] = _frozen(_build_ulaw_decode())
"""int16 level of each mu-law code word 0x00-0xFF (read-only, shape ``(256,)``)."""
ALAW_DECODE_TABLE: Final[npt.NDArray[np.int16]] = _frozen(_build_alaw_decode())
"""int16 level of each A-law code word 0x00-0xFF (read-only, shape ``(256,)``)."""
_ULAW_ENCODE: Final = _frozen(_build_ulaw_encode())
_ALAW_ENCODE: Final = _frozen(_build_alaw_encode())


def _codes(data: BytesLike) -> npt.NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        raise UsageError("G.711 data must be bytes-like, not a numpy array")
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_decode(data: BytesLike) -> npt.NDArray[np.int16]:
    """mu-law code words -> int16 PCM (a new array, shape ``(len(data),)``)."""
    return ULAW_DECODE_TABLE[_codes(data)]


def alaw_decode(data: BytesLike) -> npt.NDArray[np.int16]:
    """A-law code words -> int16 PCM (a new array, shape ``(len(data),)``)."""
    return ALAW_DECODE_TABLE[_codes(data)]


def _as_int16(samples: Samples) -> npt.NDArray[np.int16]:
    if isinstance(samples, (bytes, bytearray, memoryview)):
        if len(samples) % 2:
            raise UsageError(f"PCM s16le needs an even byte count, got {len(samples)}")
        return np.frombuffer(samples, dtype="<i2")
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array.reshape(-1)
    if not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"G.711 encoders take integer int16 samples, got dtype {array.dtype}")
    if array.size and (array.min() < -32768 or array.max() > 32767):
        raise UsageError("samples outside the int16 range")
    return array.reshape(-1).astype(np.int16)


def ulaw_encode(samples: Samples) -> bytes:
    """int16 PCM (array or s16le bytes) -> mu-law code words, one byte per sample."""
    x = _as_int16(samples)
    return _ULAW_ENCODE[x.astype(np.int32) + 32768].tobytes()


def alaw_encode(samples: Samples) -> bytes:
    """int16 PCM (array or s16le bytes) -> A-law code words, one byte per sample."""
    x = _as_int16(samples)
    return _ALAW_ENCODE[x.astype(np.int32) + 32768].tobytes()


def bytes_per_sample(encoding: str) -> int:
    """2 for ``pcm_s16le``, 1 for ``mulaw`` and ``alaw``.

    Raises:
        UsageError: unknown encoding name.
    """
    if encoding == PCM_S16LE:
        return 2
    if encoding in (MULAW, ALAW):
        return 1
    raise UsageError(f"unknown audio encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")


def decode_samples(data: BytesLike, encoding: str) -> npt.NDArray[np.int16]:
    """Wire bytes of ``encoding`` -> int16 PCM (native byte order, a new array).

    Raises:
        UsageError: unknown encoding, or an odd byte count for ``pcm_s16le``.
    """
    if encoding == MULAW:
        return ulaw_decode(data)
    if encoding == ALAW:
        return alaw_decode(data)
    bytes_per_sample(encoding)
    if len(data) % 2:
        raise UsageError(f"PCM s16le needs an even byte count, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def encode_samples(samples: Samples, encoding: str) -> bytes:
    """int16 PCM (array or s16le bytes) -> wire bytes of ``encoding``.

    Raises:
        UsageError: unknown encoding, or samples :func:`ulaw_encode` would refuse.
    """
    if encoding == MULAW:
        return ulaw_encode(samples)
    if encoding == ALAW:
        return alaw_encode(samples)
    bytes_per_sample(encoding)
    return _as_int16(samples).astype("<i2").tobytes()
