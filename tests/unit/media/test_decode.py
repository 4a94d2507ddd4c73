"""decode_media: the issue's containers written here with PyAV itself, resampling, downmix, and every error."""

from __future__ import annotations

import fractions
import io
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from whisper_streaming.errors import (
    ErrorReason,
    MediaCorruptError,
    MediaEmptyError,
    MediaError,
    MediaNoAudioError,
    MediaTooLongError,
    MediaUnsupportedCodecError,
    RemoteProtocolError,
    UsageError,
)
from whisper_streaming.media import decode_media, probe_duration_s

TONE_HZ = 440.0
AMPLITUDE = 0.1  # peak; RMS is AMPLITUDE / sqrt(2), -23.01 dBFS


def _tone(rate_hz: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _encode(fmt: str, codec: str, *, rate_hz: int = 48000, layout: str = "mono", seconds: float = 1.0,
            video: str | None = None, audio: bool = True) -> bytes:
    """A tone (and optionally black video) written by PyAV; the encoder converts the float frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        astream = out.add_stream(codec, rate=rate_hz, layout=layout) if audio else None
        vstream = None
        if video is not None:
            vstream = out.add_stream(video, rate=25)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 64, "yuv420p"
        if astream is not None:
            x = _tone(rate_hz, seconds)
            channels = 2 if layout == "stereo" else 1
            for i in range(0, x.size, 1000):
                frame = av.AudioFrame.from_ndarray(np.repeat(x[i:i + 1000], channels)[None, :], format="flt", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = rate_hz, i, fractions.Fraction(1, rate_hz)
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
        if vstream is not None:
            for k in range(int(25 * seconds)):
                vframe = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
                vframe.pts = k
                for packet in vstream.encode(vframe):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)
    return buf.getvalue()


def _rms_dbfs(x: np.ndarray) -> float:
    middle = x[1600:-1600]  # away from codec start-up and end
    return float(20 * np.log10(np.sqrt(np.mean(middle.astype(np.float64) ** 2))))


EXPECTED_DBFS = 20 * np.log10(AMPLITUDE / np.sqrt(2))

FORMATS = [
    # (container to write, encoder, expected demuxer, expected decoder, write kwargs)
    ("wav", "pcm_s16le", "wav", "pcm_s16le", {}),
    ("flac", "flac", "flac", "flac", {}),
    ("mp3", "libmp3lame", "mp3", "mp3float", {"rate_hz": 44100}),
    ("ipod", "aac", "mov,mp4,m4a,3gp,3g2,mj2", "aac", {}),  # M4A
    ("ogg", "libopus", "ogg", "opus", {}),
    ("mp4", "aac", "mov,mp4,m4a,3gp,3g2,mj2", "aac", {"video": "libx264"}),
    ("webm", "libopus", "matroska,webm", "opus", {}),
]


@pytest.mark.parametrize("fmt,encoder,demuxer,decoder,kwargs", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_container_decodes_to_16k_mono_float32_at_its_level(fmt: str, encoder: str, demuxer: str, decoder: str, kwargs: dict) -> None:
    media = decode_media(_encode(fmt, encoder, **kwargs))
    assert media.sample_rate_hz == 16000 and media.samples.dtype == np.float32 and media.samples.ndim == 1
    assert media.duration_s == pytest.approx(1.0, abs=0.01) and media.duration_s == media.samples.size / 16000
    assert abs(_rms_dbfs(media.samples) - EXPECTED_DBFS) < 1.0
    assert (media.container, media.codec) == (demuxer, decoder)
    assert media.source_sample_rate_hz == kwargs.get("rate_hz", 48000) and media.source_channels == 1
    assert media.skipped_packets == 0


def test_the_tone_keeps_its_frequency() -> None:
    media = decode_media(_encode("flac", "flac", rate_hz=44100))
    spectrum = np.abs(np.fft.rfft(media.samples))
    assert np.argmax(spectrum) * 16000 / media.samples.size == pytest.approx(TONE_HZ, abs=1.0)


def test_8k_input_is_resampled_to_16k() -> None:
    media = decode_media(_encode("wav", "pcm_s16le", rate_hz=8000))
    assert media.source_sample_rate_hz == 8000 and media.samples.size == 16000
    assert _rms_dbfs(media.samples) == pytest.approx(EXPECTED_DBFS, abs=0.1)


def test_dual_mono_stereo_downmixes_to_the_same_level_as_mono() -> None:
    """FFmpeg's default stereo->mono matrix would make it 3 dB louder (L+R times 1/sqrt(2))."""
    media = decode_media(_encode("wav", "pcm_s16le", layout="stereo"))
    assert media.source_channels == 2
    assert _rms_dbfs(media.samples) == pytest.approx(EXPECTED_DBFS, abs=0.1)


def test_other_target_rates_and_a_path_source(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    path.write_bytes(_encode("flac", "flac"))
    media = decode_media(path, sample_rate_hz=8000)
    assert media.sample_rate_hz == 8000 and media.samples.size == 8000
    assert decode_media(str(path)).samples.size == 16000


def test_probe_reads_the_declared_duration() -> None:
    assert probe_duration_s(_encode("wav", "pcm_s16le", seconds=2.5)) == pytest.approx(2.5, abs=0.01)
    assert probe_duration_s(_encode("mp4", "aac", seconds=2.0, video="libx264")) == pytest.approx(2.0, abs=0.05)


# errors


def _video_only_mp4() -> bytes:
    return _encode("mp4", "aac", video="libx264", audio=False)


def _random_bytes(n: int, seed: int) -> bytes:
    """Seeded, so the test never meets the rare random buffer some permissive demuxer accepts."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_video_only_file_has_no_audio() -> None:
    with pytest.raises(MediaNoAudioError) as info:
        decode_media(_video_only_mp4())
    assert info.value.reason is ErrorReason.MEDIA_NO_AUDIO and info.value.reason.http_status == 422
    assert "no audio stream" in str(info.value)


@pytest.mark.parametrize("data", [_random_bytes(4096, seed=3), b"hello, this is not audio\n" * 100, _random_bytes(20000, seed=0)],
                         ids=["random-4k", "text", "random-20k"])
def test_random_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(MediaCorruptError) as info:
        decode_media(data)
    assert info.value.reason is ErrorReason.MEDIA_CORRUPT


def test_file_cut_before_its_index_is_corrupt() -> None:
    """An MP4 writes its index (moov) at the end: half of it cannot be opened."""
    data = _encode("mp4", "aac", video="libx264")
    with pytest.raises(MediaCorruptError):
        decode_media(data[: len(data) // 2])
    with pytest.raises(MediaCorruptError):
        decode_media(data[:40])


def test_file_cut_in_its_audio_decodes_what_is_there() -> None:
    """The chosen behaviour for a truncated body: the prefix, like the ffmpeg tool; a broken last packet is counted."""
    wav = _encode("wav", "pcm_s16le")
    assert decode_media(wav[: 44 + 48000]).duration_s == pytest.approx(0.5, abs=0.01)
    flac = _encode("flac", "flac", seconds=3.0)  # about 8 KiB of header (padding), then the frames
    media = decode_media(flac[: len(flac) // 2])
    assert 0.5 < media.duration_s < 2.5 and media.skipped_packets >= 1
    assert abs(_rms_dbfs(media.samples) - EXPECTED_DBFS) < 0.5


def test_mostly_undecodable_audio_is_corrupt() -> None:
    """An M4A whose AAC data (mdat) is overwritten: its index (moov, after it) still cuts packets, which do not decode."""
    m4a = bytearray(_encode("ipod", "aac", seconds=3.0))
    start, end = m4a.index(b"mdat") + 4, m4a.index(b"moov") - 4
    assert end - start > 10000
    m4a[start:end] = np.random.default_rng(1).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    with pytest.raises(MediaCorruptError, match="damaged|could not be decoded"):
        decode_media(bytes(m4a))


def test_empty_bytes_and_an_audio_stream_without_samples_are_empty() -> None:
    with pytest.raises(MediaEmptyError) as info:
        decode_media(b"")
    assert info.value.reason is ErrorReason.MEDIA_EMPTY
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(MediaEmptyError, match="empty"):
        decode_media(buf.getvalue())


def test_codec_without_a_decoder_is_unsupported() -> None:
    """A WAV whose format tag (0xABCD) names no codec FFmpeg knows."""
    wav = _encode("wav", "pcm_s16le")
    assert wav[20:22] == struct.pack("<H", 1)  # WAVE_FORMAT_PCM
    with pytest.raises(MediaUnsupportedCodecError) as info:
        decode_media(wav[:20] + struct.pack("<H", 0xABCD) + wav[22:])
    assert info.value.reason.http_status == 415


def test_longer_than_the_limit_is_refused_while_decoding() -> None:
    data = _encode("flac", "flac", seconds=3.0)
    assert decode_media(data, max_duration_s=3.5).duration_s == pytest.approx(3.0, abs=0.01)
    with pytest.raises(MediaTooLongError, match="2 s") as info:
        decode_media(data, max_duration_s=2.0)
    assert info.value.reason.http_status == 413


def test_a_demuxer_that_opens_other_files_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg's concat demuxer, from uploaded bytes, would read a file of the server."""
    (tmp_path / "secret.wav").write_bytes(_encode("wav", "pcm_s16le"))
    monkeypatch.chdir(tmp_path)
    playlist = b"ffconcat version 1.0\nfile secret.wav\n"
    with av.open(io.BytesIO(playlist)) as plain:  # the threat: plain PyAV reads it
        assert plain.format.name == "concat" and plain.streams.audio
    with pytest.raises(MediaCorruptError):
        decode_media(playlist)


def test_errors_are_peer_errors_with_messages_safe_for_a_client(tmp_path: Path) -> None:
    path = tmp_path / "secret-dir" / "upload.bin"
    path.parent.mkdir()
    path.write_bytes(_random_bytes(2048, seed=4))
    with pytest.raises(MediaError) as info:
        decode_media(path)
    assert isinstance(info.value, RemoteProtocolError)
    assert "secret-dir" not in str(info.value) and "Errno" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        decode_media(tmp_path / "missing.wav")
    with pytest.raises(UsageError):
        decode_media(_encode("wav", "pcm_s16le"), sample_rate_hz=0)
    with pytest.raises(UsageError):
        decode_media(12345)  # type: ignore[arg-type]
