"""Tests for whisper_streaming.sinks.pcm."""

from __future__ import annotations

import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.errors import UsageError
from whisper_streaming.sinks.pcm import PcmRecorder, PcmStreamWriter, sanitize_user_id

NOW = datetime(2024, 5, 17, 13, 45, 7, 123456)

HOSTILE_IDS = [
    "../../etc/passwd",
    "a/b\\c",
    "\x00\x1b[31m",
    "한국어",
    "",
    ".",
    "..",
    "/",
    "/abs/path",
    "....//....//x",
    "-rf",
    ".hidden",
    "CON",
    "a" * 1000,
    "x\ny\rz\tw",
]


# --------------------------------------------------------------------------- sanitize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice", "alice"),
        ("Alice.Smith-01_x", "Alice.Smith-01_x"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("a/b\\c", "a_b_c"),
        ("\x00\x1b[31m", "_31m"),
        ("한국어", "_"),
        ("user 한 name", "user_name"),
        ("", "user"),
        (".", "user"),
        ("..", "user"),
        ("...---", "user"),
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("a__b", "a_b"),
        ("ａｂｃ", "_"),  # full-width letters are not ASCII
    ],
)
def test_sanitize_user_id(raw: str, expected: str) -> None:
    assert sanitize_user_id(raw) == expected


@pytest.mark.parametrize("raw", HOSTILE_IDS)
def test_sanitize_output_is_safe(raw: str) -> None:
    out = sanitize_user_id(raw)
    assert out
    assert out not in (".", "..")
    assert not out.startswith((".", "-"))
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in out)
    assert "__" not in out
    assert len(out) <= 64


def test_sanitize_truncates() -> None:
    assert sanitize_user_id("a" * 100) == "a" * 64
    assert sanitize_user_id("abcdef", max_chars=3) == "abc"


def test_sanitize_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        sanitize_user_id(b"alice")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        sanitize_user_id("alice", max_chars=0)


# --------------------------------------------------------------------------- writing


def _samples(n: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(-32768, 32768, size=n, dtype=np.int16)
    data[:4] = [-32768, 32767, 0, -1]  # extremes survive the round trip
    return data


def test_creates_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "pcm"
    recorder = PcmRecorder(target)
    assert target.is_dir()
    assert recorder.directory == target.resolve()


def test_write_produces_valid_wav(tmp_path: Path) -> None:
    recorder = PcmRecorder(tmp_path / "pcm")
    samples = _samples()
    raw = samples.astype("<i2").tobytes()
    with recorder.open_stream("alice", session_id="s1", stream_index=0, now=NOW) as writer:
        assert isinstance(writer, PcmStreamWriter)
        # uneven chunk sizes, including odd byte counts that split a sample
        for start, stop in [(0, 1), (1, 961), (961, 962), (962, 5001), (5001, len(raw))]:
            writer.write(raw[start:stop])
        assert writer.samples_written == len(samples)
    assert writer.path.name == "alice_20240517T134507_123456_s1_0.wav"
    assert writer.path.parent == recorder.directory

    data, rate = sf.read(writer.path, dtype="int16")
    assert rate == 16000
    assert data.ndim == 1
    np.testing.assert_array_equal(data, samples)
    info = sf.info(writer.path)
    assert info.channels == 1
    assert info.subtype == "PCM_16"
    with wave.open(str(writer.path), "rb") as reader:
        assert reader.getnframes() == len(samples)


def test_accepts_bytearray_and_memoryview(tmp_path: Path) -> None:
    samples = _samples(100)
    raw = samples.tobytes()
    writer = PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=1, now=NOW)
    writer.write(bytearray(raw[:100]))
    writer.write(memoryview(raw)[100:])
    writer.close()
    data, _ = sf.read(writer.path, dtype="int16")
    np.testing.assert_array_equal(data, samples)


def test_empty_stream_is_valid_wav(tmp_path: Path) -> None:
    writer = PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=0, now=NOW)
    writer.close()
    assert writer.samples_written == 0
    with wave.open(str(writer.path), "rb") as reader:
        assert reader.getnframes() == 0
        assert reader.getframerate() == 16000


def test_custom_sample_rate(tmp_path: Path) -> None:
    recorder = PcmRecorder(tmp_path, sample_rate_hz=8000)
    with recorder.open_stream("u", session_id="s", stream_index=0, now=NOW) as writer:
        writer.write(_samples(80).tobytes())
    assert sf.info(writer.path).samplerate == 8000


def test_unpaired_trailing_byte_dropped(tmp_path: Path) -> None:
    with PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=0, now=NOW) as w:
        w.write(b"\x01\x00\x02")
    data, _ = sf.read(w.path, dtype="int16")
    assert data.tolist() == [1]


def test_close_idempotent_and_write_after_close(tmp_path: Path) -> None:
    writer = PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=0, now=NOW)
    writer.write(_samples(10).tobytes())
    writer.close()
    size = writer.path.stat().st_size
    writer.close()
    writer.close()
    assert writer.closed
    assert writer.path.stat().st_size == size
    with pytest.raises(UsageError):
        writer.write(b"\x00\x00")
    data, _ = sf.read(writer.path, dtype="int16")
    assert len(data) == 10


def test_write_rejects_non_bytes(tmp_path: Path) -> None:
    with PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=0, now=NOW) as w:
        with pytest.raises(UsageError):
            w.write("text")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("user_id", HOSTILE_IDS)
def test_hostile_ids_stay_inside_directory(tmp_path: Path, user_id: str) -> None:
    recorder = PcmRecorder(tmp_path / "pcm")
    with recorder.open_stream(user_id, session_id=user_id, stream_index=0, now=NOW) as writer:
        writer.write(b"\x00\x00")
    resolved = writer.path.resolve()
    assert resolved.parent == recorder.directory
    assert recorder.directory in resolved.parents
    assert not resolved.name.startswith(".")
    assert [p.name for p in recorder.directory.iterdir()] == [resolved.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pcm"]


def test_same_second_streams_do_not_overwrite(tmp_path: Path) -> None:
    recorder = PcmRecorder(tmp_path)
    writers = []
    for value in (1, 2, 3):
        writer = recorder.open_stream("bob", session_id="s", stream_index=0, now=NOW)
        writer.write(np.full(10, value, dtype=np.int16).tobytes())
        writers.append(writer)
    for writer in writers:
        writer.close()
    paths = [w.path for w in writers]
    assert len(set(paths)) == 3
    assert paths[0].name == "bob_20240517T134507_123456_s_0.wav"
    assert paths[1].name == "bob_20240517T134507_123456_s_0_1.wav"
    assert paths[2].name == "bob_20240517T134507_123456_s_0_2.wav"
    for value, path in zip((1, 2, 3), paths):
        data, _ = sf.read(path, dtype="int16")
        assert data.tolist() == [value] * 10


def test_ids_colliding_after_sanitizing_do_not_overwrite(tmp_path: Path) -> None:
    recorder = PcmRecorder(tmp_path)
    a = recorder.open_stream("a/b", session_id="s", stream_index=0, now=NOW)
    b = recorder.open_stream("a\\b", session_id="s", stream_index=0, now=NOW)
    a.close()
    b.close()
    assert a.path != b.path
    assert len(list(tmp_path.iterdir())) == 2


def test_existing_symlink_not_followed(tmp_path: Path) -> None:
    directory = tmp_path / "pcm"
    recorder = PcmRecorder(directory)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (directory / "u_20240517T134507_123456_s_0.wav").symlink_to(victim)
    with recorder.open_stream("u", session_id="s", stream_index=0, now=NOW) as writer:
        writer.write(b"\x01\x00")
    assert victim.read_text() == "keep me"
    assert writer.path.name == "u_20240517T134507_123456_s_0_1.wav"


def test_default_timestamp_in_name(tmp_path: Path) -> None:
    with PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=7) as writer:
        pass
    user, date_time, micros, session, index = writer.path.stem.split("_")
    assert (user, session, index) == ("u", "s", "7")
    datetime.strptime(f"{date_time}_{micros}", "%Y%m%dT%H%M%S_%f")


@pytest.mark.parametrize("index", [-1, True, "0", 1.0])
def test_bad_stream_index(tmp_path: Path, index: object) -> None:
    with pytest.raises(UsageError):
        PcmRecorder(tmp_path).open_stream("u", session_id="s", stream_index=index)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_bad_sample_rate(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        PcmRecorder(tmp_path, sample_rate_hz=0)
