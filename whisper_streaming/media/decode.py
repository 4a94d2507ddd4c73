"""Decode an uploaded audio or video file to 16 kHz mono float32 with PyAV (FFmpeg in its wheels).

No system ``ffmpeg`` and no resampler of our own: PyAV demuxes and decodes the first audio stream
and ``av.AudioResampler`` (libswresample) converts each decoded frame to mono float32 at the
target rate as it comes, so the audio never sits in memory at its source rate (a chunk list of
resampled float32 arrays, one concatenate at the end).

Only the demuxers in :data:`ALLOWED_DEMUXERS` are tried (FFmpeg's ``format_whitelist``): FFmpeg
also has demuxers that open *other* files named inside the input (``concat``, ``hls``, ``dash``,
image sequences), and an upload naming a file of the server must not read it.

Errors are the :class:`whisper_streaming.errors.MediaError` family (peer errors, each with a
``MEDIA_*`` reason and an HTTP status); their messages are safe to show to an HTTP client
(FFmpeg's own message, which can name a path, goes only to the debug log).

Truncated files: one cut before its header or index (an MP4 whose ``moov`` is missing, a WAV
shorter than its header, an Ogg cut in half) cannot be opened and is :class:`MediaCorruptError`;
one cut in the middle of its audio data decodes to what is there (as the ``ffmpeg`` tool does),
with the last, broken packet skipped and counted in :attr:`DecodedMedia.skipped_packets`.  Audio
in which more than half of the packets fail to decode, or none decodes, is corrupt.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np
import numpy.typing as npt

from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.errors import (
    MediaCorruptError,
    MediaEmptyError,
    MediaNoAudioError,
    MediaTooLongError,
    MediaUnsupportedCodecError,
    UsageError,
)

__all__ = ["ALLOWED_DEMUXERS", "DecodedMedia", "decode_media", "probe_duration_s"]

log = logging.getLogger(__name__)

ALLOWED_DEMUXERS: tuple[str, ...] = (
    "wav", "w64", "flac", "mp3", "mov", "matroska", "webm", "ogg", "aac", "ac3", "aiff", "caf", "amr",
    "au", "wv", "asf", "avi", "flv", "mpegts",
)
"""FFmpeg demuxer names an upload may be read with (``format_whitelist``; a demuxer named
``"mov,mp4,m4a,3gp,3g2,mj2"`` matches through ``mov``): the issue's WAV, FLAC, MP3, M4A/AAC,
OGG/Opus, MP4, WebM, and other common audio (AIFF, CAF, AMR, WavPack, AC-3, raw ADTS AAC) and
video (ASF/WMA, AVI, FLV, MPEG-TS) containers."""

_CORRUPT = "the file is not a readable audio or video file (unknown format, or cut before its header)"
_MAX_BAD_PACKET_FRACTION = 0.5
_SWR_OPTIONS = {"rematrix_maxval": "1.0"}
"""libswresample's downmix to mono sums the channels with FFmpeg's mix levels (stereo: L and R
each times 1/sqrt(2), so two equal channels come out 3 dB louder than either, and can pass full
scale); with float output it does not normalize that matrix unless ``rematrix_maxval`` is set
(libswresample ``rematrix.c``). 1.0 scales each output row to sum to 1: stereo becomes the mean of
L and R, so a level in dBFS is the same in a mono and a dual-mono stereo file."""

Source = bytes | bytearray | memoryview | str | Path


@dataclass(frozen=True, eq=False)
class DecodedMedia:
    """A file's first audio stream, decoded.

    ``samples``: float32, shape ``(n,)``, mono (libswresample's downmix, normalized: stereo
    is the mean of its two channels), nominally within [-1, 1], at ``sample_rate_hz``.  ``duration_s`` is ``n /
    sample_rate_hz`` (what was decoded, not the container's claim).  ``container``: FFmpeg's
    demuxer name (``"wav"``, ``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"matroska,webm"`` ...); ``codec``:
    the decoder's name (``"aac"``, ``"opus"``, ``"mp3float"`` ...); ``source_sample_rate_hz``,
    ``source_channels``: the stream's own rate and channel count; ``skipped_packets``: audio
    packets that failed to decode and were left out (a damaged or truncated file).
    """

    samples: npt.NDArray[np.float32]
    sample_rate_hz: int
    duration_s: float
    container: str
    codec: str
    source_sample_rate_hz: int
    source_channels: int
    skipped_packets: int = 0


def _open(source: Source) -> av.container.InputContainer:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise MediaEmptyError("the file is empty")
        file: io.BytesIO | str = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        file = str(source)
    else:
        raise UsageError(f"source must be bytes or a path, not {type(source).__name__}")
    try:
        return av.open(file, mode="r", container_options={"format_whitelist": ",".join(ALLOWED_DEMUXERS)},
                       metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:  # av.error.FileNotFoundError is both
        if isinstance(source, (str, Path)) and isinstance(exc, FileNotFoundError):
            raise UsageError(f"no such file: {source}") from exc
        log.debug("cannot open media: %r", exc)
        raise MediaCorruptError(_CORRUPT) from None


def probe_duration_s(source: Source) -> float | None:
    """The duration the container declares, in seconds, without decoding (None if it declares none).

    Cheap (reads the header, and for some formats estimates from the bit rate); a hint for an
    early refusal or a progress estimate, not a measurement: :func:`decode_media`'s
    ``duration_s`` is what decodes.

    Raises:
        MediaEmptyError, MediaCorruptError: as :func:`decode_media` for a file it cannot open.
        UsageError: ``source`` is neither bytes nor a path, or the path does not exist.
    """
    with _open(source) as container:
        if container.duration is not None and container.duration > 0:
            return float(container.duration / av.time_base)
        audio = container.streams.audio
        if audio and audio[0].duration is not None and audio[0].time_base is not None:
            return float(audio[0].duration * audio[0].time_base)
        return None


def decode_media(source: Source, *, sample_rate_hz: int = ASR_SAMPLE_RATE_HZ,
                 max_duration_s: float | None = None) -> DecodedMedia:
    """Decode the first audio stream of an audio or video file to mono float32 at ``sample_rate_hz``.

    ``source``: the file's bytes, or a path.  ``max_duration_s``: refuse audio longer than this
    (checked while decoding, so a long file, or a small file that decodes to hours, stops as soon
    as it passes the limit; set it for untrusted uploads).  Gaps in the stream's timestamps are
    not filled: the decoded frames are joined in order.

    Raises:
        MediaEmptyError: empty bytes, or an audio stream with no samples.
        MediaCorruptError: not a container of :data:`ALLOWED_DEMUXERS`, cut before its header,
            or audio that does not decode (none, or more than half of its packets).
        MediaNoAudioError: no audio stream (a video-only file).
        MediaUnsupportedCodecError: the audio codec has no decoder.
        MediaTooLongError: more than ``max_duration_s`` of audio.
        UsageError: a bad argument (``sample_rate_hz`` not positive, a source that is neither
            bytes nor a path, a path that does not exist).
    """
    if sample_rate_hz <= 0:
        raise UsageError(f"sample_rate_hz must be positive, not {sample_rate_hz}")
    max_samples = None if max_duration_s is None else int(max_duration_s * sample_rate_hz)
    with _open(source) as container:
        if not container.streams.audio:
            raise MediaNoAudioError("the file has no audio stream")
        stream = container.streams.audio[0]
        context = stream.codec_context
        if context is None:
            raise MediaUnsupportedCodecError("the file's audio codec is not supported (no decoder for it)")
        chunks: list[npt.NDArray[np.float32]] = []
        n_samples = 0
        packets = bad_packets = 0
        resampler: av.AudioResampler | None = None
        setup: tuple[str, str, int] | None = None

        def take(frames: list[av.AudioFrame]) -> None:
            nonlocal n_samples
            for out in frames:
                chunk = out.to_ndarray().reshape(-1)  # packed flt mono: shape (1, n)
                chunks.append(chunk)
                n_samples += chunk.size
            if max_samples is not None and n_samples > max_samples:
                raise MediaTooLongError(f"the audio is longer than the limit of {max_duration_s:g} s")

        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                packets += 1
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    bad_packets += 1
                    log.debug("skipping an undecodable audio packet: %r", exc)
                    continue
                for frame in frames:
                    frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if frame_setup != setup:  # first frame, or the stream changed its format
                        if resampler is not None:
                            take(resampler.resample(None))
                        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz, options=_SWR_OPTIONS)
                        setup = frame_setup
                    take(resampler.resample(frame))
        except av.error.FFmpegError as exc:  # the demuxer hit the cut of a truncated file
            bad_packets += 1
            log.debug("demuxing stopped early: %r", exc)
        if resampler is not None:
            take(resampler.resample(None))
        if n_samples == 0:
            if bad_packets:
                raise MediaCorruptError("the file's audio could not be decoded")
            raise MediaEmptyError("the file's audio stream is empty")
        if bad_packets > _MAX_BAD_PACKET_FRACTION * max(packets, 1):
            raise MediaCorruptError(f"the file's audio is damaged ({bad_packets} of {packets} packets do not decode)")
        if bad_packets:
            log.info("decoded media with %d of %d audio packets skipped (damaged or truncated)", bad_packets, packets)
        samples = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        return DecodedMedia(
            samples=samples.astype(np.float32, copy=False),
            sample_rate_hz=sample_rate_hz,
            duration_s=samples.size / sample_rate_hz,
            container=container.format.name,
            codec=context.name,
            source_sample_rate_hz=int(context.sample_rate),
            source_channels=int(context.channels),
            skipped_packets=bad_packets,
        )
