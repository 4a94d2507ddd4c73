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

import asyncio
import logging
import os
import queue
import re
import threading
import wave
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ
from whisper_streaming.errors import UsageError
from whisper_streaming.sinks.base import SessionClosed, SinkEvent, StreamAudioReceived, StreamClosed, StreamOpened

__all__ = [
    "PcmLimits",
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
        part: int = 1,
    ) -> PcmStreamWriter:
        """Create a new WAV file for one stream and return its writer.

        ``sample_rate_hz`` (default: the recorder's) is the rate in the WAV header: the
        stream's own rate (``%o sample_rate``).

        The name is ``f"{user}_{now:%Y%m%dT%H%M%S_%f}_{session}_{stream_index}.wav"`` with
        user and session sanitized (``_part<N>`` before ``.wav`` for the continuation ``part`` > 1); if that file exists, ``_1``, ``_2``, ... is appended to
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
        stem = f"{user}_{now:%Y%m%dT%H%M%S_%f}_{session}_{stream_index}" + (f"_part{part}" if part > 1 else "")

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


@dataclass(frozen=True)
class PcmLimits:
    """Bounds of :class:`PcmSink`.

    ``max_file_bytes``: a stream's file is closed at this size and the stream goes on in
    ``..._part2.wav``, ``_part3`` ... (a RIFF/WAV header cannot state more than 4 GiB; Python's
    ``wave`` fails past it).  ``max_total_bytes``: everything this sink writes; past it nothing
    more is recorded (logged once; None: no cap).  ``max_files_per_session``: files one session
    may create (a client pipelining ``%b%f`` cannot fill a directory).  ``queue_chunks``: audio
    chunks waiting for the disk thread; past it, chunks are dropped from the recording (counted and
    logged; the session never waits for the disk).
    """

    max_file_bytes: int = 1 << 30
    max_total_bytes: int | None = 20 << 30
    max_files_per_session: int = 1000
    queue_chunks: int = 8192


@dataclass
class _OpenStream:
    writer: PcmStreamWriter | None
    user_id: str
    session_id: str
    stream_index: int
    sample_rate_hz: int
    part: int = 1
    bytes_in_file: int = 0


class PcmSink:
    """PCM saving as a :class:`~whisper_streaming.sinks.base.Sink`: one WAV per stream of every session.

    The file I/O runs on one thread of its own: :meth:`publish` only queues (bounded by
    :attr:`PcmLimits.queue_chunks`), so a slow disk never stalls the event loop or a session.
    Bounded by :class:`PcmLimits`.  A file that cannot be created or written is logged and the
    stream goes on unrecorded; a recording problem never ends a session.
    """

    def __init__(self, recorder: PcmRecorder, limits: PcmLimits = PcmLimits()) -> None:
        self.recorder = recorder
        self.limits = limits
        self._queue: queue.Queue[SinkEvent | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # written by the disk thread only
        self._open: dict[tuple[str, int], _OpenStream] = {}
        self._files_per_session: dict[str, int] = {}
        self.bytes_written = 0
        self.files_created = 0
        self.chunks_dropped = 0
        self._full_logged = False

    def publish(self, event: SinkEvent) -> None:
        if self._closed or not isinstance(event, (StreamOpened, StreamAudioReceived, StreamClosed, SessionClosed)):
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="whisper-streaming-pcm-save", daemon=True)
            self._thread.start()
        if isinstance(event, StreamAudioReceived) and self._queue.qsize() >= self.limits.queue_chunks:
            self.chunks_dropped += 1  # the disk is behind: drop from the recording, never wait
            if self.chunks_dropped in (1, 100, 10000) or self.chunks_dropped % 100000 == 0:
                logger.warning("PCM saving is behind the audio: %d chunks dropped from recordings so far", self.chunks_dropped)
            return
        self._queue.put_nowait(event)  # unbounded for opening/closing files, which must not be lost

    async def aclose(self, deadline_s: float) -> None:
        """Write what is queued (up to ``deadline_s``), close every file, stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        self._queue.put_nowait(None)
        await loop.run_in_executor(None, self._thread.join, deadline_s)
        if self._thread.is_alive():
            logger.warning("PCM saving did not finish within %.1f s", deadline_s)

    # ------------------------------------------------------------------ the disk thread

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._handle(event)
            except Exception:  # noqa: BLE001 - the thread must keep serving the other streams
                logger.exception("PCM saving failed on %s", type(event).__name__)
        for key in list(self._open):
            self._close(key)

    def _handle(self, event: SinkEvent) -> None:
        session_id = event.session.session_id
        if isinstance(event, StreamOpened):
            stream = _OpenStream(None, event.session.user_id or "", session_id, event.stream_index, event.sample_rate_hz)
            self._open[(session_id, event.stream_index)] = stream
            self._start_file(stream)
        elif isinstance(event, StreamAudioReceived):
            stream = self._open.get((session_id, event.stream_index))
            if stream is not None and stream.writer is not None:
                self._write(stream, event.pcm)
        elif isinstance(event, StreamClosed):
            self._close((session_id, event.stream_index))
        elif isinstance(event, SessionClosed):
            for key in [k for k in self._open if k[0] == session_id]:
                self._close(key)
            self._files_per_session.pop(session_id, None)

    def _start_file(self, stream: _OpenStream) -> None:
        stream.writer = None
        files = self._files_per_session.get(stream.session_id, 0)
        if files >= self.limits.max_files_per_session:
            if files == self.limits.max_files_per_session:
                logger.warning("session %s reached %d recorded files; its further streams are not recorded",
                               stream.session_id, files)
                self._files_per_session[stream.session_id] = files + 1
            return
        if self._over_total():
            return
        try:
            stream.writer = self.recorder.open_stream(stream.user_id, session_id=stream.session_id, stream_index=stream.stream_index,
                                                      sample_rate_hz=stream.sample_rate_hz, part=stream.part)
        except (OSError, UsageError) as exc:
            logger.error("cannot record stream %d of %s: %s", stream.stream_index, stream.session_id, exc)
            return
        self._files_per_session[stream.session_id] = files + 1
        self.files_created += 1
        stream.bytes_in_file = 0

    def _over_total(self) -> bool:
        cap = self.limits.max_total_bytes
        if cap is not None and self.bytes_written >= cap:
            if not self._full_logged:
                self._full_logged = True
                logger.error("PCM saving stopped: %d bytes recorded, the pcm_save.max_total_bytes cap", self.bytes_written)
            return True
        return False

    def _write(self, stream: _OpenStream, pcm: bytes) -> None:
        while pcm and stream.writer is not None:
            room = self.limits.max_file_bytes - stream.bytes_in_file
            if room < 2:
                self._finish_file(stream)
                stream.part += 1
                self._start_file(stream)
                continue
            if self._over_total():
                self._finish_file(stream)
                return
            chunk, pcm = pcm[: room - room % 2], pcm[room - room % 2 :]
            try:
                stream.writer.write(chunk)
            except (OSError, UsageError) as exc:
                logger.error("recording %s failed: %s; the stream goes on unrecorded", stream.writer.path, exc)
                self._finish_file(stream)
                return
            stream.bytes_in_file += len(chunk)
            self.bytes_written += len(chunk)

    def _finish_file(self, stream: _OpenStream) -> None:
        writer, stream.writer = stream.writer, None
        if writer is not None:
            try:
                writer.close()
            except (OSError, UsageError) as exc:
                logger.error("closing %s failed: %s", writer.path, exc)

    def _close(self, key: tuple[str, int]) -> None:
        stream = self._open.pop(key, None)
        if stream is not None:
            self._finish_file(stream)
