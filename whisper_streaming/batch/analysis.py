"""Diarization and acoustic features of a whole file, in a process of their own.

Neither may run on the event loop (CAM++ embeddings on PyTorch, librosa's pitch tracker), nor
in the server's ASR workers (they hold one Whisper model each and serve the streams).  One
``spawn``-ed analysis process, started at the first request that needs it and kept, loads the
speaker-embedding model once; it runs at a lower CPU priority (``nice`` +10) so the ASR workers
of live streams get the cores first.  If it dies, the request fails with :class:`AsrError`
and the next request starts a new one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from whisper_streaming.core.batch import AcousticFeatures, SpeakerTurn
from whisper_streaming.errors import AsrError

__all__ = ["AnalysisTask", "AnalysisOutput", "AnalysisProcess", "run_analysis", "warm_up", "ANALYSIS_NICE", "ANALYSIS_TIMEOUT_BASE_S",
           "ANALYSIS_TIMEOUT_PER_AUDIO_S"]

log = logging.getLogger(__name__)

ANALYSIS_NICE = 10
"""How much the analysis process lowers its CPU priority (``os.nice``): live streams first."""

ANALYSIS_TIMEOUT_BASE_S = 120.0
ANALYSIS_TIMEOUT_PER_AUDIO_S = 0.5
"""An analysis is stopped (its process killed, the job failed) after ``BASE + PER_AUDIO * audio
seconds``: 420 s for a 10-minute file, whose diarization and features take ~30 s on 2 cores
(``docs/benchmarks.md``).  A cancelled job's analysis is stopped the same way, so the next job
never waits behind a file nobody wants."""


@dataclass(frozen=True)
class AnalysisTask:
    """What to analyse: ``samples`` float32 mono at ``sample_rate_hz``, shape ``(n,)``;
    ``speech_regions``: ``(start_s, end_s)`` of the speech (diarization windows lie inside them);
    ``segment_spans``: ``(start_s, end_s)`` of each transcribed segment (features per segment)."""

    samples: np.ndarray
    sample_rate_hz: int
    speech_regions: tuple[tuple[float, float], ...]
    segment_spans: tuple[tuple[float, float], ...]
    diarize: bool = False
    num_speakers: int | None = None
    max_speakers: int = 8
    features: bool = False


@dataclass(frozen=True)
class AnalysisOutput:
    """``turns``: who spoke when (empty without diarization); ``features``: one per segment
    span (empty without features); seconds each stage took."""

    turns: tuple[SpeakerTurn, ...]
    features: tuple[AcousticFeatures, ...]
    diarize_s: float
    features_s: float


_diarizer: Any = None  # one per analysis process: the embedding model loads once


def run_analysis(task: AnalysisTask) -> AnalysisOutput:
    """Run the analyses ``task`` asks for (here, in the calling process).

    Raises:
        ModelError: the speaker-embedding model cannot be loaded.
    """
    global _diarizer
    turns: tuple[SpeakerTurn, ...] = ()
    feats: tuple[AcousticFeatures, ...] = ()
    t0 = time.perf_counter()
    if task.diarize and task.speech_regions:
        if _diarizer is None:
            from whisper_streaming.analyzers.diarization import Diarizer

            _diarizer = Diarizer()
        turns = tuple(_diarizer.diarize(task.samples, list(task.speech_regions), num_speakers=task.num_speakers,
                                        max_speakers=task.max_speakers))
    t1 = time.perf_counter()
    if task.features and task.segment_spans:
        from whisper_streaming.analyzers.acoustic import segment_features

        feats = tuple(segment_features(task.samples, task.sample_rate_hz, list(task.segment_spans)))
    return AnalysisOutput(turns, feats, t1 - t0, time.perf_counter() - t1)


def warm_up(diarize: bool, features: bool) -> None:
    """Load what a later :func:`run_analysis` needs (the embedding model; librosa's compiled
    functions), so that the analysis after a file's transcription does not pay for it."""
    global _diarizer
    if diarize and _diarizer is None:
        from whisper_streaming.analyzers.diarization import Diarizer

        _diarizer = Diarizer()
    if features:
        from whisper_streaming.analyzers.acoustic import warm_compiled

        warm_compiled()


def _init_process() -> None:
    try:
        os.nice(ANALYSIS_NICE)
    except OSError:  # not permitted: run at the normal priority
        pass
    try:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    except ImportError:
        pass


class AnalysisProcess:
    """The analysis process (see the module docstring); :meth:`run` is safe to call concurrently
    (requests queue for the one process)."""

    def __init__(self, fn: Callable[[AnalysisTask], AnalysisOutput] | None = None) -> None:
        self._fn = fn if fn is not None else run_analysis  # picklable, module-level (tests inject fakes)
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._closed = False

    def warm(self, *, diarize: bool, features: bool) -> None:
        """Start the process and load the models a request will need, in the background (call
        it when a file's transcription starts: the loading overlaps it)."""
        if self._closed or not (diarize or features):
            return
        executor = self._ensure()
        future = executor.submit(warm_up, diarize, features)
        future.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                                 or log.warning("analysis warm-up failed: %s", f.exception()))

    def _ensure(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                                    initializer=_init_process)
        return self._executor

    async def run(self, task: AnalysisTask) -> AnalysisOutput:
        """Run ``task`` in the analysis process.

        Raises:
            AsrError: the process died, or the analysis failed (the reason in the message).
        """
        if self._closed:
            raise AsrError("the analysis process is closed")
        executor = self._ensure()
        audio_s = len(task.samples) / task.sample_rate_hz
        timeout_s = ANALYSIS_TIMEOUT_BASE_S + ANALYSIS_TIMEOUT_PER_AUDIO_S * audio_s
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(executor, self._fn, task), timeout_s)
        except asyncio.CancelledError:  # the job was cancelled: the process must not go on with its file
            self._kill(executor)
            raise
        except asyncio.TimeoutError:
            self._kill(executor)
            raise AsrError(f"the analysis took longer than {timeout_s:.0f} s; stopped") from None
        except concurrent.futures.process.BrokenProcessPool as exc:
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise AsrError(f"the analysis process died: {exc}") from exc
        except AsrError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing analysis fails this request alone
            log.warning("analysis failed: %s: %s", type(exc).__name__, exc)
            raise AsrError(f"analysis failed: {type(exc).__name__}: {exc}") from exc

    def _kill(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        """Kill the process of ``executor`` (the next request starts a new one)."""
        if self._executor is executor:
            self._executor = None
        for proc in list(getattr(executor, "_processes", {}).values()):
            if proc.is_alive():
                proc.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the process (idempotent); a running analysis is abandoned."""
        self._closed = True
        if self._executor is not None:
            self._kill(self._executor)
