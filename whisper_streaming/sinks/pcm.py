"""Saving each received PCM stream as a WAV file (16-bit signed little-endian, mono).

User and session ids come from the network, so they are sanitized before they become part
of a file name, the final path is checked to lie inside the recording directory, and files
are created exclusively (``'xb'``): an existing file is never overwritten, a numeric suffix
is added instead.  Files are created with mode ``0o640`` (recorded speech is personal data).

File names look like ``<user>_<YYYYmmddTHHMMSS_ffffff>_<session>_<stream_index>.wav``; the
timestamp is UTC unless the caller passes ``now``.

:class:`PcmStreamWriter` is not meant to be shared between threads without care; it guards
its own state with a lock but performs blocking file I/O (run it in a thread from asyncio
code if latency matters).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import wave
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ
from whisper_streaming.errors import UsageError
from whisper_streaming.sinks.base import SessionClosed, SinkEvent, StreamAudioReceived, StreamClosed, StreamOpened

__all__ = [
    "PcmSink","sanitize_user_id", "PcmRecorder", "PcmStreamWriter"]

logger = logging.getLogger(__name__)

_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]")
_UNDERSCORES_RE = re.compile(r"_{2,}")
_MAX_SUFFIX = 1000
_FILE_MODE = 0o640
_SAMPLE_WIDTH_BYTES = 2


def _sanitize(value: str, max_chars: int, fallback: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"expected a str id, got {type(value).__name__}")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise UsageError(f"max_chars must be a positive int, got {max_chars!r}")
    text = _UNSAFE_RE.sub("_", value)
    text = _UNDERSCORES_RE.sub("_", text)
    text = text.lstrip(".-")
    text = text[:max_chars]
    return text or fallback


def sanitize_user_id(user_id: str, *, max_chars: int = 64) -> str:
    """Make ``user_id`` safe as a file-name component.

    Keeps ASCII ``[A-Za-z0-9._-]``, replaces every other character (path separators,
    control characters, spaces, non-ASCII) with ``_``, collapses runs of ``_``, strips
    leading ``.`` and ``-`` (no hidden files, never ``.`` or ``..``) and truncates to
    ``max_chars`` characters.  An empty result becomes ``"user"``.

    Raises:
        UsageError: ``user_id`` is not a str or ``max_chars`` is not a positive int.
    """
    return _sanitize(user_id, max_chars, "user")


def _open_exclusive(path: str, flags: int) -> int:
    return os.open(path, flags, _FILE_MODE)


class PcmStreamWriter:
    """One WAV file being written.  Use as a context manager or call :meth:`close`.

    Attributes:
        path: the resolved path of the file.
    """

    def __init__(self, path: Path, file: BinaryIO, *, sample_rate_hz: int) -> None:
        self.path = path
        self._file = file
        self._wave = wave.open(file, "wb")  # noqa: SIM115 - closed in close()
        self._wave.setnchannels(1)
        self._wave.setsampwidth(_SAMPLE_WIDTH_BYTES)
        self._wave.setframerate(sample_rate_hz)
        self._pending = b""  # an odd trailing byte waiting for its partner
        self._samples = 0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def samples_written(self) -> int:
        """Number of 16-bit samples written so far."""
        return self._samples

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def write(self, pcm: bytes) -> None:
        """Append s16le mono PCM bytes.

        Chunks need not be sample aligned: an odd trailing byte is kept until the next
        call (and dropped with a warning at :meth:`close` if it never gets a partner).

        Raises:
            UsageError: the writer is closed or ``pcm`` is not bytes-like.
            OSError: the disk write failed.
        """
        if not isinstance(pcm, (bytes, bytearray, memoryview)):
            raise UsageError(f"pcm must be bytes-like, got {type(pcm).__name__}")
        with self._lock:
            if self._closed:
                raise UsageError(f"write() on closed PCM writer {self.path.name}")
            data = self._pending + bytes(pcm)
            usable = len(data) - (len(data) % _SAMPLE_WIDTH_BYTES)
            self._pending = data[usable:]
            if usable:
                self._wave.writeframesraw(data[:usable])
                self._samples += usable // _SAMPLE_WIDTH_BYTES

    def close(self) -> None:
        """Finalize the WAV header and close the file.  Safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pending:
                logger.warning("dropping unpaired trailing PCM byte in %s", self.path.name)
                self._pending = b""
            try:
                self._wave.close()  # patches the header sizes; leaves our file object open
            finally:
                self._file.close()
        logger.debug("closed %s (%d samples)", self.path, self._samples)

    def __enter__(self) -> PcmStreamWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PcmStreamWriter {str(self.path)!r} {state} samples={self._samples}>"


class PcmRecorder:
    """Creates one :class:`PcmStreamWriter` per stream inside ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *, sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ) -> None:
        """Create the recorder, creating ``directory`` (and parents) if missing.

        Raises:
            UsageError: ``sample_rate_hz`` is not a positive int.
            OSError: the directory cannot be created (or a non-directory is in the way).
        """
        if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int) or sample_rate_hz <= 0:
            raise UsageError(f"sample_rate_hz must be a positive int, got {sample_rate_hz!r}")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._directory = path.resolve()
        self._sample_rate_hz = sample_rate_hz

    @property
    def directory(self) -> Path:
        """The resolved recording directory."""
        return self._directory

    @property
    def sample_rate_hz(self) -> int:
        """Sample rate written into every WAV header, in Hz."""
        return self._sample_rate_hz

    def open_stream(
        self,
        user_id: str,
        *,
        session_id: str,
        stream_index: int,
        now: datetime | None = None,
        sample_rate_hz: int | None = None,
    ) -> PcmStreamWriter:
        """Create a new WAV file for one stream and return its writer.

        ``sample_rate_hz`` (default: the recorder's) is the rate in the WAV header: the
        stream's own rate (``%o sample_rate``).

        The name is ``f"{user}_{now:%Y%m%dT%H%M%S_%f}_{session}_{stream_index}.wav"`` with
        user and session sanitized; if that file exists, ``_1``, ``_2``, ... is appended to
        the stem.  ``now`` defaults to the current UTC time.

        Raises:
            UsageError: bad argument types, or the path would leave the directory.
            OSError: the file cannot be created.
        """
        if isinstance(stream_index, bool) or not isinstance(stream_index, int) or stream_index < 0:
            raise UsageError(f"stream_index must be a non-negative int, got {stream_index!r}")
        if now is None:
            now = datetime.now(timezone.utc)
        elif not isinstance(now, datetime):
            raise UsageError(f"now must be a datetime, got {type(now).__name__}")
        user = sanitize_user_id(user_id)
        session = _sanitize(session_id, 64, "session")
        stem = f"{user}_{now:%Y%m%dT%H%M%S_%f}_{session}_{stream_index}"

        last_error: FileExistsError | None = None
        for attempt in range(_MAX_SUFFIX):
            name = f"{stem}.wav" if attempt == 0 else f"{stem}_{attempt}.wav"
            candidate = self._directory / name
            if candidate.is_symlink():
                # taken (and resolving it could point anywhere); O_EXCL would refuse it anyway
                last_error = FileExistsError(f"{candidate} exists (symlink)")
                continue
            path = self._checked_path(candidate)
            try:
                file = open(path, "xb", opener=_open_exclusive)  # noqa: SIM115
            except FileExistsError as exc:
                last_error = exc
                continue
            try:
                writer = PcmStreamWriter(path, file, sample_rate_hz=sample_rate_hz or self._sample_rate_hz)
            except BaseException:
                file.close()
                raise
            logger.debug("recording stream to %s", path)
            return writer
        assert last_error is not None
        raise last_error

    def _checked_path(self, candidate: Path) -> Path:
        path = candidate.resolve()
        if path.parent != self._directory or path.name != candidate.name:
            raise UsageError(f"refusing to write PCM outside {self._directory}: {candidate.name!r}")
        return path

    def __repr__(self) -> str:
        return f"<PcmRecorder {str(self._directory)!r} {self._sample_rate_hz} Hz>"


class PcmSink:
    """PCM saving as a :class:`~whisper_streaming.sinks.base.Sink`: one WAV per stream of every session.

    A file that cannot be created or written is logged; the stream goes on unrecorded.
    """

    def __init__(self, recorder: PcmRecorder) -> None:
        self.recorder = recorder
        self._open: dict[tuple[str, int], PcmStreamWriter] = {}

    def publish(self, event: SinkEvent) -> None:
        key = (event.session.session_id, getattr(event, "stream_index", -1))
        if isinstance(event, StreamOpened):
            try:
                self._open[key] = self.recorder.open_stream(event.session.user_id or "", session_id=event.session.session_id,
                                                            stream_index=event.stream_index, sample_rate_hz=event.sample_rate_hz)
            except (OSError, UsageError) as exc:
                logger.error("cannot record stream %d of %s: %s", event.stream_index, event.session.session_id, exc)
        elif isinstance(event, StreamAudioReceived):
            writer = self._open.get(key)
            if writer is not None:
                try:
                    writer.write(event.pcm)
                except OSError as exc:
                    logger.error("recording %s failed: %s; closing it", writer.path, exc)
                    self._close(key)
        elif isinstance(event, StreamClosed):
            self._close(key)
        elif isinstance(event, SessionClosed):
            for k in [k for k in self._open if k[0] == event.session.session_id]:
                self._close(k)

    def _close(self, key: tuple[str, int]) -> None:
        writer = self._open.pop(key, None)
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                logger.error("closing %s failed: %s", writer.path, exc)

    async def aclose(self, deadline_s: float) -> None:
        for key in list(self._open):
            self._close(key)
