"""The worker process of :class:`~whisper_streaming.backends.pool.ProcessPool` and its typed messages.

Parent -> worker: :class:`WorkerJob`, or None to stop.  Worker -> parent: :class:`WorkerReady`
or :class:`WorkerInitError` once, then one :class:`JobDone`, :class:`JobFailed` or
:class:`JobStopped` per job.  Every message is a frozen dataclass (pickled over a
``multiprocessing`` pipe).  Besides the pipe, the parent may write a job's id into the
worker's shared ``stop`` value: the job was withdrawn, and the engine gives it up at its next
stage (``AsrEngine.transcribe(should_stop=...)``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from whisper_streaming.analyzers.base import Analyzer, AnalyzerSpec, build_analyzers
from whisper_streaming.backends.base import UtteranceResult
from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.engines.base import AsrEngine, BatchDecode, EngineOptions, pcm16_to_float32, takes_should_stop
from whisper_streaming.errors import TranscriptionStopped

__all__ = ["WorkerJob", "WorkerReady", "WorkerInitError", "JobDone", "JobFailed", "JobStopped", "run_analyses", "start_audio_analyses",
           "worker_main", "takes_should_stop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerJob:
    """Transcribe ``pcm`` (s16le mono 16 kHz) in ``language``, then run the ``analyses`` named.

    ``minimal``: ask the engine for its cheapest decode (``transcribe(..., minimal=True)``:
    one greedy attempt, no fallback, tight token and time bounds); the pool sets it on the
    retry of an utterance whose first try hung a worker.  When false the engine is called
    without the keyword, so an engine that lacks it still serves every other job.  ``batch``: a
    chunk of a file (:class:`~whisper_streaming.engines.base.BatchDecode`), passed to the engine
    only when set.
    """

    job_id: int
    pcm: bytes
    language: LanguageRequest | None
    analyses: frozenset[str]
    minimal: bool = False
    batch: BatchDecode | None = None


@dataclass(frozen=True)
class WorkerReady:
    pid: int


@dataclass(frozen=True)
class WorkerInitError:
    message: str


@dataclass(frozen=True)
class JobDone:
    job_id: int
    result: UtteranceResult


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    message: str


@dataclass(frozen=True)
class JobStopped:
    """The job was withdrawn (its id in the shared ``stop`` value) and given up before its end."""

    job_id: int


def _annotate(analyzer: Analyzer, audio: Any, transcript: Transcript | None) -> Any | None:
    """One analyzer's annotation; None when it raised (logged: the transcript still goes out)."""
    try:
        return analyzer.analyze(audio, transcript)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - the transcript still goes out, without this annotation
        log.warning("analysis %s failed: %s: %s", analyzer.name, type(exc).__name__, exc)
        return None


def run_analyses(analyzers: Mapping[str, Analyzer], names: frozenset[str], audio: Any, transcript: Transcript,
                 early: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], float]:
    """The annotations of the analyzers in ``names`` (in ``analyzers`` order) and the seconds spent.

    ``early``: annotations already computed beside the transcription (:func:`start_audio_analyses`).
    An analyzer that raises is logged and left out: the transcript still goes out.
    """
    annotations: dict[str, Any] = {}
    wanted = [a for name, a in analyzers.items() if name in names]
    if not wanted:
        return annotations, 0.0
    t0 = time.perf_counter()
    for analyzer in wanted:
        value = early[analyzer.name] if early is not None and analyzer.name in early else _annotate(analyzer, audio, transcript)
        if value is not None:
            annotations[analyzer.name] = value
    return annotations, time.perf_counter() - t0


def _warm_up(analyzer: Any) -> None:
    try:
        analyzer.warm_up()
    except Exception as exc:  # noqa: BLE001 - it will fail (and be logged) again at its first use
        log.warning("analysis %s could not load: %s: %s", getattr(analyzer, "name", "?"), type(exc).__name__, exc)


def start_audio_analyses(pool: concurrent.futures.ThreadPoolExecutor, analyzers: Mapping[str, Analyzer], names: frozenset[str],
                         audio: Any) -> dict[str, concurrent.futures.Future[Any]]:
    """Start the wanted analyzers that need only the audio (``audio_only``) in ``pool``, beside the
    transcription (CTranslate2 and PyTorch release the GIL): a speaker embedding then adds about
    40 ms to a 3 s utterance instead of about 100 ms (``docs/benchmarks.md``, "Speaker identification")."""
    return {name: pool.submit(_annotate, a, audio, None) for name, a in analyzers.items()
            if name in names and getattr(a, "audio_only", False)}


def _abandon(early: Mapping[str, concurrent.futures.Future[Any]]) -> None:
    """Drop the analyses started beside a transcription that gave no transcript: cancel those not
    started, and wait for one already running, so that it never runs on into the next job."""
    for f in early.values():
        f.cancel()
    concurrent.futures.wait(list(early.values()))


def _thread_lock_for_tqdm() -> None:
    """Give tqdm a thread lock before anything makes a progress bar.

    faster-whisper makes a (disabled) tqdm bar per transcription, and tqdm's first bar creates a
    ``multiprocessing`` lock: a named semaphore registered with the parent's resource tracker.
    A worker that is killed (hung, or busy when the server stops) cannot release it, and the
    tracker warns of a leaked semaphore when the server exits.  One process needs no such lock.
    """
    try:
        from tqdm import tqdm
    except ImportError:
        return
    tqdm.set_lock(threading.RLock())


PR_SET_PDEATHSIG = 1
"""``prctl(2)`` option: the signal this process gets when its parent dies (Linux)."""


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the server process dies (``prctl(PR_SET_PDEATHSIG)``).

    A worker normally exits when it reads EOF on its pipe, but one that is paused (``SIGSTOP``,
    a partial worker while finals decode) or stuck in native code never reads it: if the server
    were killed, it would stay behind holding its memory.  Best effort: elsewhere, or if
    ``prctl`` is unavailable, nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl: nobody reads our answers
        os._exit(0)


def worker_main(
    conn: multiprocessing.connection.Connection,
    factory: Callable[[EngineOptions], AsrEngine],
    options: EngineOptions,
    analyzer_specs: tuple[AnalyzerSpec, ...] = (),
    stop: Any = None,
) -> None:
    """Worker process: build the engine and analyzers once, then answer :class:`WorkerJob` messages.

    ``stop``: a shared integer (``multiprocessing.Value("q")``) into which the parent writes the
    id of a job it withdrew; such a job is answered with :class:`JobStopped` if the engine gave
    it up (or it had not started), else as usual.  None: every job runs to its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    _die_with_parent()
    _thread_lock_for_tqdm()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format=f"worker {os.getpid()} %(levelname)s %(name)s: %(message)s")
    try:
        engine = factory(options)
        analyzers = build_analyzers(analyzer_specs)
    except BaseException as exc:  # noqa: BLE001 - report any load failure to the parent
        conn.send(WorkerInitError(f"{type(exc).__name__}: {exc}"))
        return
    beside = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")
    for analyzer in analyzers.values():  # models an analyzer asks to load early: in the background
        if getattr(analyzer, "preload", False) and hasattr(analyzer, "warm_up"):
            beside.submit(_warm_up, analyzer)
    stoppable = stop is not None and takes_should_stop(engine)
    conn.send(WorkerReady(os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if stop is not None and stop.value == msg.job_id:  # withdrawn before it started
            conn.send(JobStopped(msg.job_id))
            continue
        audio = pcm16_to_float32(msg.pcm)
        early = start_audio_analyses(beside, analyzers, msg.analyses, audio) if msg.analyses else {}
        extra: dict[str, Any] = {}
        if msg.batch is not None:
            extra["batch"] = msg.batch
        elif msg.minimal:
            extra["minimal"] = True
        if stoppable:
            job_id = msg.job_id
            extra["should_stop"] = lambda: stop.value == job_id
        try:
            transcript = engine.transcribe(audio, language=msg.language, **extra)
        except TranscriptionStopped:
            _abandon(early)
            conn.send(JobStopped(msg.job_id))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad utterance must not kill the worker
            _abandon(early)
            conn.send(JobFailed(msg.job_id, f"{type(exc).__name__}: {exc}"))
            continue
        if transcript.no_speech_screened:  # no speech, no text: the session drops what analyses would say
            _abandon(early)
            conn.send(JobDone(msg.job_id, UtteranceResult(transcript, {}, 0.0)))
            continue
        t0 = time.perf_counter()
        done_early = {name: f.result() for name, f in early.items()}  # never raises: _annotate catches
        annotations, seconds = run_analyses(analyzers, msg.analyses, audio, transcript, done_early)
        if early:  # the wait for what ran beside the transcription
            seconds += time.perf_counter() - t0
        conn.send(JobDone(msg.job_id, UtteranceResult(transcript, annotations, seconds)))
