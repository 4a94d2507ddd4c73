"""Asynchronous batch jobs: a bounded queue, progress, cancellation, retention, callbacks.

A job is one decoded file and its :class:`~whisper_streaming.batch.request.BatchRequest`.
:meth:`JobStore.submit` queues it (at most ``max_queued`` jobs waiting or running, else
:class:`JobQueueFull`); ``max_running`` jobs run at once (one by default: a file already uses
every worker the streams leave free).  A job's ``progress`` (0-100) only grows and reaches 100
exactly when it completes.  A finished job (completed, failed or cancelled) is kept for
``retention_s`` seconds, then forgotten (its id then answers 404).  With a ``callback_url`` the
job's final view is POSTed there once it finishes, through the webhook sink
(:class:`~whisper_streaming.sinks.webhook.WebhookSink`: bounded retries with backoff).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.batch.service import BatchTranscriber
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.core.batch import BatchResult
from whisper_streaming.errors import AsrError, UsageError, WhisperStreamingError
from whisper_streaming.sinks.webhook import WebhookSink

__all__ = ["JobState", "JobFailure", "JobView", "JobStore", "JobQueueFull", "CallbackBody"]

log = logging.getLogger(__name__)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class JobQueueFull(WhisperStreamingError):
    """``max_queued`` jobs are already waiting or running (HTTP 429)."""


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed: ``code`` (``ASR_FAILED``, ``ANALYSIS_FAILED``, ``SHUTTING_DOWN``) and a message for the client."""

    code: str
    message: str


@dataclass(frozen=True)
class JobView:
    """A job as a client sees it.  Times: wall clock (``time.time()``) seconds."""

    id: str
    state: JobState
    progress: float
    stage: str
    request: BatchRequest
    filename: str
    duration_s: float
    created_at: float
    finished_at: float | None = None
    result: BatchResult | None = None
    error: JobFailure | None = None
    callback_url: str | None = field(default=None, repr=False)


CallbackBody = Callable[[JobView], Mapping[str, Any]]
"""Renders a finished job into the JSON body of its callback (the routes' job JSON)."""


@dataclass
class _Job:
    view: JobView
    samples: np.ndarray | None
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class JobStore:
    """See the module docstring.

    Args:
        transcriber: runs the jobs.
        max_queued: jobs waiting or running at most (>= 1).
        max_running: jobs running at once (>= 1).
        retention_s: how long a finished job stays readable (> 0).
        callback_body: the JSON body POSTed to a job's ``callback_url``.
        callback_timeout_s / callback_retries: per request, and retries after the first.
        clock: wall clock (tests).

    Raises:
        UsageError: a bound out of range.
    """

    def __init__(self, transcriber: BatchTranscriber, *, max_queued: int = 16, max_running: int = 1, retention_s: float = 3600.0,
                 callback_body: CallbackBody | None = None, callback_timeout_s: float = 10.0, callback_retries: int = 3,
                 clock: Callable[[], float] = time.time) -> None:
        if max_queued < 1 or max_running < 1 or not retention_s > 0:
            raise UsageError("need max_queued >= 1, max_running >= 1 and retention_s > 0")
        self.transcriber = transcriber
        self.max_queued = max_queued
        self.retention_s = retention_s
        self._callback_body = callback_body
        self._callback_timeout_s = callback_timeout_s
        self._callback_retries = callback_retries
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._slots = asyncio.Semaphore(max_running)
        self._sinks: set[WebhookSink] = set()
        self._closing = False
        self._seq = itertools.count(1)

    # ------------------------------------------------------------------ public API

    @property
    def active(self) -> int:
        """Jobs queued or running."""
        return sum(not j.view.state.finished for j in self._jobs.values())

    def submit(self, samples: np.ndarray, request: BatchRequest, *, filename: str = "", callback_url: str | None = None) -> JobView:
        """Queue a job for ``samples`` (float32 mono 16 kHz, shape ``(n,)``).

        Raises:
            JobQueueFull: ``max_queued`` jobs are active.
            UsageError: the store is closing, or a bad ``callback_url``.
        """
        self._expire()
        if self._closing:
            raise UsageError("the job store is closing")
        if self.active >= self.max_queued:
            raise JobQueueFull(f"{self.active} jobs are queued or running (the limit is {self.max_queued}); retry later")
        if callback_url is not None:
            from whisper_streaming.sinks.webhook import parse_url

            parse_url(callback_url)  # UsageError for a bad URL, before anything is queued
        # held as int16 while it waits (half the memory of float32; Whisper's input is 16-bit audio anyway)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        job_id = f"job_{next(self._seq)}_{secrets.token_hex(8)}"
        view = JobView(job_id, JobState.QUEUED, 0.0, "queued", request, filename, len(samples) / ASR_SAMPLE_RATE_HZ, self._clock(),
                       callback_url=callback_url)
        job = _Job(view, pcm)
        self._jobs[job_id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"batch-{job_id}")
        log.info("job %s queued: %s, %.1f s of audio", job_id, filename or "(no name)", view.duration_s)
        return view

    def get(self, job_id: str) -> JobView | None:
        """The job's view, or None when unknown or expired."""
        self._expire()
        job = self._jobs.get(job_id)
        return None if job is None else job.view

    async def wait(self, job_id: str) -> JobView:
        """Wait until the job is finished; its final view.

        Raises:
            UsageError: unknown job id.
        """
        job = self._jobs.get(job_id)
        if job is None:
            raise UsageError(f"unknown job {job_id!r}")
        await job.done.wait()
        return job.view

    def cancel(self, job_id: str) -> JobView | None:
        """Cancel a queued or running job (a finished one is left as it is); None when unknown."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if not job.view.state.finished and job.task is not None:
            job.task.cancel()
            self._finish(job, JobState.CANCELLED, error=None)
        return job.view

    async def close(self, deadline_s: float = 5.0) -> None:
        """Cancel every active job (their callbacks say ``cancelled``), then deliver the callbacks
        still queued until ``deadline_s`` (idempotent)."""
        self._closing = True
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for job in list(self._jobs.values()):
            if not job.view.state.finished and job.task is not None:
                job.task.cancel()
                self._finish(job, JobState.CANCELLED, error=JobFailure("SHUTTING_DOWN", "the server is stopping"))
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.aclose(deadline_s) for s in list(self._sinks)), return_exceptions=True)
        self._sinks.clear()

    # ------------------------------------------------------------------ running

    async def _run(self, job: _Job) -> None:
        try:
            async with self._slots:
                if job.view.state.finished:
                    return
                self._update(job, state=JobState.PROCESSING, stage="starting")
                assert job.samples is not None
                samples = job.samples.astype(np.float32) / 32768.0
                result = await self.transcriber.transcribe(samples, job.view.request, key=("batch", job.view.id),
                                                           on_progress=lambda pct, stage: self._progress(job, pct, stage))
            self._finish(job, JobState.COMPLETED, result=result)
        except asyncio.CancelledError:
            self._finish(job, JobState.CANCELLED, error=None)
        except AsrError as exc:
            self._finish(job, JobState.FAILED, error=JobFailure("ASR_FAILED", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one failing job must not take the store down
            log.exception("job %s failed", job.view.id)
            self._finish(job, JobState.FAILED, error=JobFailure("INTERNAL_ERROR", f"{type(exc).__name__}"))

    def _progress(self, job: _Job, percent: float, stage: str) -> None:
        if job.view.state is not JobState.PROCESSING:
            return
        self._update(job, progress=max(job.view.progress, min(99.0, round(percent, 1))), stage=stage)  # 100 only at completion

    def _update(self, job: _Job, **changes: Any) -> None:
        job.view = replace(job.view, **changes)

    def _finish(self, job: _Job, state: JobState, *, result: BatchResult | None = None, error: JobFailure | None = None) -> None:
        if job.view.state.finished:
            return
        progress = 100.0 if state is JobState.COMPLETED else job.view.progress
        job.view = replace(job.view, state=state, progress=progress, stage=state.value, result=result, error=error,
                           finished_at=self._clock())
        job.samples = None  # the audio is not kept past the job
        job.done.set()
        log.info("job %s %s%s", job.view.id, state.value, f": {error.message}" if error else "")
        if job.view.callback_url:
            self._post_callback(job.view)

    def _post_callback(self, view: JobView) -> None:
        if self._callback_body is None or view.callback_url is None:
            return
        try:
            sink = WebhookSink(view.callback_url, timeout_s=self._callback_timeout_s, max_retries=self._callback_retries, max_queue=1)
            sink.post_nowait(self._callback_body(view))
        except (UsageError, ValueError) as exc:
            log.warning("job %s: callback not sent: %s", view.id, exc)
            return
        self._sinks.add(sink)

        async def close_later() -> None:
            await sink.aclose(deadline_s=self._callback_timeout_s * (self._callback_retries + 1) + 30.0)
            self._sinks.discard(sink)

        asyncio.get_running_loop().create_task(close_later(), name=f"callback-{view.id}")

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [k for k, j in self._jobs.items() if j.view.finished_at is not None and now - j.view.finished_at > self.retention_s]:
            del self._jobs[job_id]
