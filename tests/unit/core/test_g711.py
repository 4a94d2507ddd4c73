"""G.711 codec: known values from the standard's reference tables, round trips, errors.

Reference values are copied from CPython's ``Modules/audioop.c`` tables ``_st_ulaw2linear16`` and
``_st_alaw2linear16`` (from SoX, which took them from Sun's public-domain ``g711.c``, the usual
reference implementation of ITU-T G.711).  Where this interpreter still has ``audioop`` (3.11,
3.12), every table entry and every int16 encoding is also compared with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from whisper_streaming.core import g711
from whisper_streaming.errors import UsageError

ALL_BYTES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)

# CPython audioop.c _st_ulaw2linear16[0:16], [112:128], [128:144], [240:256].
ULAW_REF = {
    **dict(zip(range(0, 16), [-32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956,
                              -23932, -22908, -21884, -20860, -19836, -18812, -17788, -16764])),
    **dict(zip(range(112, 128), [-120, -112, -104, -96, -88, -80, -72, -64, -56, -48, -40, -32, -24, -16, -8, 0])),
    **dict(zip(range(128, 144), [32124, 31100, 30076, 29052, 28028, 27004, 25980, 24956,
                                 23932, 22908, 21884, 20860, 19836, 18812, 17788, 16764])),
    **dict(zip(range(240, 256), [120, 112, 104, 96, 88, 80, 72, 64, 56, 48, 40, 32, 24, 16, 8, 0])),
}
# CPython audioop.c _st_alaw2linear16[0:16], [32:48], [80:96], [208:224].
ALAW_REF = {
    **dict(zip(range(0, 16), [-5504, -5248, -6016, -5760, -4480, -4224, -4992, -4736,
                              -7552, -7296, -8064, -7808, -6528, -6272, -7040, -6784])),
    **dict(zip(range(32, 48), [-22016, -20992, -24064, -23040, -17920, -16896, -19968, -18944,
                               -30208, -29184, -32256, -31232, -26112, -25088, -28160, -27136])),
    **dict(zip(range(80, 96), [-88, -72, -120, -104, -24, -8, -56, -40,
                               -216, -200, -248, -232, -152, -136, -184, -168])),
    **dict(zip(range(208, 224), [88, 72, 120, 104, 24, 8, 56, 40, 216, 200, 248, 232, 152, 136, 184, 168])),
}


@pytest.mark.parametrize(
    ("code", "value"),
    # 0xEF: complement 0x10 = segment 1, step 0: (((0 << 3) + 132) << 1) - 132 = 132.
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8), (0xEF, 132)],
)
def test_ulaw_known_values(code: int, value: int) -> None:
    assert int(g711.ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(("code", "value"), [(0xD5, 8), (0x55, -8), (0x2A, -32256), (0xAA, 32256), (0xD4, 24), (0x80, 5504)])
def test_alaw_known_values(code: int, value: int) -> None:
    assert int(g711.alaw_decode(bytes([code]))[0]) == value


def test_tables_match_reference_excerpts() -> None:
    for code, value in ULAW_REF.items():
        assert g711.ULAW_DECODE_TABLE[code] == value, hex(code)
    for code, value in ALAW_REF.items():
        assert g711.ALAW_DECODE_TABLE[code] == value, hex(code)


def test_sign_symmetry_and_distinct_levels() -> None:
    u, a = g711.ULAW_DECODE_TABLE.astype(int), g711.ALAW_DECODE_TABLE.astype(int)
    flipped = np.arange(256) ^ 0x80
    assert (u == -u[flipped]).all()
    assert (a == -a[flipped]).all()
    assert len(set(u.tolist())) == 255  # only 0x7F and 0xFF share a level (zero)
    assert len(set(a.tolist())) == 256  # A-law has no zero level


def test_tables_are_read_only() -> None:
    with pytest.raises(ValueError):
        g711.ULAW_DECODE_TABLE[0] = 1


def test_every_byte_decodes_and_reencodes() -> None:
    u = g711.ulaw_decode(ALL_BYTES)
    a = g711.alaw_decode(ALL_BYTES)
    assert u.dtype == np.int16 and a.dtype == np.int16
    assert u.shape == a.shape == (256,)
    expected_u = bytearray(ALL_BYTES)
    expected_u[0x7F] = 0xFF  # negative zero encodes as positive zero
    assert g711.ulaw_encode(u) == bytes(expected_u)
    assert g711.alaw_encode(a) == ALL_BYTES


def _bracketing_levels(levels: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    levels = np.unique(levels.astype(np.int64))
    x = x.astype(np.int64)
    hi_idx = np.searchsorted(levels, x, side="left")  # first level >= x
    above = levels[np.minimum(hi_idx, len(levels) - 1)]
    exact = (hi_idx < len(levels)) & (above == x)
    below = np.where(exact, x, levels[np.maximum(hi_idx - 1, 0)])
    above = np.where(hi_idx >= len(levels), levels[-1], above)
    return below, above


@pytest.mark.parametrize(("encode", "decode", "table"), [
    (g711.ulaw_encode, g711.ulaw_decode, g711.ULAW_DECODE_TABLE),
    (g711.alaw_encode, g711.alaw_decode, g711.ALAW_DECODE_TABLE),
], ids=["mulaw", "alaw"])
def test_round_trip_within_one_quantization_step_for_every_int16(encode, decode, table) -> None:
    coded = encode(ALL_INT16)
    assert len(coded) == len(ALL_INT16)
    y = decode(coded).astype(np.int64)
    below, above = _bracketing_levels(table, ALL_INT16)
    ok = (y == below) | (y == above)
    assert ok.all(), f"first bad input {int(ALL_INT16[~ok][0])}"
    # Inside the table's range the error is at most the local step.
    inside = (ALL_INT16 >= table.min()) & (ALL_INT16 <= table.max())
    assert (np.abs(y - ALL_INT16)[inside] <= (above - below)[inside]).all()


def test_small_signals_keep_their_size() -> None:
    x = np.array([0, 100, -100, 1000, -1000, 8000, -8000], dtype=np.int16)
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        y = dec(enc(x)).astype(int)
        assert np.all(np.abs(y - x) <= np.maximum(16, np.abs(x) // 16)), y


@pytest.mark.parametrize("n", [0, 1, 2, 159, 160, 4001])
def test_length_preserved(n: int) -> None:
    rng = np.random.default_rng(n)
    data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    assert len(g711.ulaw_decode(data)) == n
    assert len(g711.alaw_decode(bytearray(data))) == n
    pcm = rng.integers(-32768, 32768, n, dtype=np.int16)
    assert len(g711.ulaw_encode(pcm)) == n
    assert len(g711.alaw_encode(memoryview(pcm.astype("<i2").tobytes()))) == n


def test_encoders_accept_s16le_bytes_and_wider_int_arrays() -> None:
    x = np.array([-32768, -5, 0, 7, 32767], dtype=np.int16)
    as_bytes = x.astype("<i2").tobytes()
    assert g711.ulaw_encode(as_bytes) == g711.ulaw_encode(x) == g711.ulaw_encode(x.astype(np.int64))
    assert g711.alaw_encode(as_bytes) == g711.alaw_encode(x) == g711.alaw_encode(x.tolist())


def test_encoder_errors() -> None:
    with pytest.raises(UsageError):
        g711.ulaw_encode(b"\x00\x01\x02")  # odd s16le byte count
    with pytest.raises(UsageError):
        g711.alaw_encode(np.array([0.5, 0.25]))  # floats are not PCM
    with pytest.raises(UsageError):
        g711.ulaw_encode(np.array([40000], dtype=np.int32))  # outside int16
    with pytest.raises(UsageError):
        g711.ulaw_decode(np.zeros(4, dtype=np.uint8))  # type: ignore[arg-type]


def test_decode_and_encode_samples_dispatch() -> None:
    x = np.array([-1000, 0, 1000, 32767], dtype=np.int16)
    for encoding in g711.ENCODINGS:
        wire = g711.encode_samples(x, encoding)
        assert len(wire) == len(x) * g711.bytes_per_sample(encoding)
        back = g711.decode_samples(wire, encoding)
        assert back.dtype == np.int16 and back.shape == x.shape
    assert (g711.decode_samples(g711.encode_samples(x, "pcm_s16le"), "pcm_s16le") == x).all()
    assert (g711.decode_samples(b"\xff\x7f", "mulaw") == [0, 0]).all()
    with pytest.raises(UsageError):
        g711.decode_samples(b"\x00", "pcm_s16le")
    with pytest.raises(UsageError):
        g711.decode_samples(b"\x00", "g722")
    with pytest.raises(UsageError):
        g711.bytes_per_sample("opus")


def test_matches_audioop_where_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = ALL_INT16.astype("<i2").tobytes()
    assert np.frombuffer(audioop.ulaw2lin(ALL_BYTES, 2), "<i2").tolist() == g711.ULAW_DECODE_TABLE.tolist()
    assert np.frombuffer(audioop.alaw2lin(ALL_BYTES, 2), "<i2").tolist() == g711.ALAW_DECODE_TABLE.tolist()
    assert audioop.lin2ulaw(pcm, 2) == g711.ulaw_encode(ALL_INT16)
    assert audioop.lin2alaw(pcm, 2) == g711.alaw_encode(ALL_INT16)
