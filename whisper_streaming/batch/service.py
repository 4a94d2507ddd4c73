"""Transcribe (and optionally diarize and analyse) a whole file on the server's workers.

:class:`BatchTranscriber` is transport-neutral: the HTTP routes, the jobs and the local CLI
all call :meth:`BatchTranscriber.transcribe` with decoded samples.  The stages:

1. **segmenting**: the streaming VAD (the server's ``vad`` options) finds the speech, and the
   utterances are merged into chunks of at most 30 s (:mod:`whisper_streaming.batch.chunking`);
2. **transcribing**: the chunks go to the backend as low-priority batch jobs
   (``UtteranceJob.batch``), at most ``max_in_flight`` at a time, so a long file keeps every
   worker the streams leave free busy; without a requested language the first chunk is
   decoded alone (in the server's ``model.language`` when set, else detected) and its language
   is used for the others (one language per file, as per stream);
3. **diarizing** / **analysing**: in the analysis process (:mod:`whisper_streaming.batch.analysis`);
   each word gets the speaker whose turn overlaps it most, each segment the speaker of most of
   its words (of its time, without words).

Progress (0-100) grows with the seconds of audio each stage has done, weighted by what the
stage costs per second of audio (:data:`STAGE_WEIGHTS`); the caller reports 100 at completion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import replace

import numpy as np

from whisper_streaming.analyzers.diarization import speaker_summaries as turn_summaries
from whisper_streaming.backends.base import AsrBackend, UtteranceJob, UtteranceResult
from whisper_streaming.batch.analysis import AnalysisProcess, AnalysisTask
from whisper_streaming.batch.chunking import Chunk, merge_chunks, speech_regions
from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.core.batch import AcousticFeatures, BatchResult, BatchSegment, BatchWord, SpeakerSummary, SpeakerTurn, StageTiming
from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.engines.base import BatchDecode
from whisper_streaming.errors import AsrError, UsageError
from whisper_streaming.pipeline.vad import VadOptions

__all__ = ["BatchTranscriber", "ProgressCallback", "STAGE_WEIGHTS", "assign_speakers", "speaker_summaries"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
"""``(percent 0-100, stage)``; called from the event loop."""

STAGE_WEIGHTS = {"segmenting": 0.02, "transcribing": 1.0, "diarizing": 0.15, "analysing": 0.05}
"""Relative cost per second of audio of each stage (measured on 2 cores: ``docs/benchmarks.md``,
"Batch analysis"); only the stages a request runs count."""


class BatchTranscriber:
    """See the module docstring.

    Args:
        backend: the server's ASR backend (the chunks are batch jobs there).
        vad_options: the VAD that finds the speech (the server's ``vad`` config).
        max_in_flight: chunks submitted at once (the workers a file may use; >= 1).
        analysis: the analysis process for diarization and features (None: one of its own).
        max_speakers: the most speakers diarization looks for without ``num_speakers``.
    """

    def __init__(self, backend: AsrBackend, *, vad_options: VadOptions, max_in_flight: int = 2,
                 analysis: AnalysisProcess | None = None, max_speakers: int = 8) -> None:
        if max_in_flight < 1:
            raise UsageError("max_in_flight must be >= 1")
        self.backend = backend
        self.vad_options = vad_options
        self.max_in_flight = max_in_flight
        self.analysis = analysis if analysis is not None else AnalysisProcess()
        self.max_speakers = max_speakers

    def close(self) -> None:
        """Stop the analysis process (idempotent)."""
        self.analysis.close()

    async def transcribe(self, samples: np.ndarray, request: BatchRequest, *, key: Hashable,
                         on_progress: ProgressCallback | None = None) -> BatchResult:
        """Analyse ``samples`` (float32 mono 16 kHz, shape ``(n,)``) as ``request`` asks.

        ``key``: the backend's session key for this file's chunks (unique per request; its
        queued chunks are dropped when the task is cancelled).

        Raises:
            UsageError: ``samples`` of the wrong shape or dtype.
            AsrError: a chunk failed on every attempt, or the analysis failed.
        """
        if samples.dtype != np.float32 or samples.ndim != 1:
            raise UsageError("samples must be a 1-D float32 array")
        rate = ASR_SAMPLE_RATE_HZ
        duration_s = len(samples) / rate
        weights = {"segmenting": STAGE_WEIGHTS["segmenting"], "transcribing": STAGE_WEIGHTS["transcribing"]}
        if request.diarize:
            weights["diarizing"] = STAGE_WEIGHTS["diarizing"]
        if request.features:
            weights["analysing"] = STAGE_WEIGHTS["analysing"]
        total = sum(weights.values())
        done: dict[str, float] = dict.fromkeys(weights, 0.0)

        def report(stage: str, fraction: float) -> None:
            done[stage] = max(done[stage], min(1.0, fraction))
            if on_progress is not None:
                on_progress(100.0 * sum(weights[s] * done[s] for s in weights) / total, stage)

        timings: list[StageTiming] = []

        def timed(stage: str, t0: float) -> None:
            seconds = time.perf_counter() - t0
            timings.append(StageTiming(stage, seconds, seconds / duration_s if duration_s > 0 else 0.0))

        warm = getattr(self.analysis, "warm", None)
        if warm is not None:
            warm(diarize=request.diarize, features=request.features)  # models load while the chunks decode
        try:
            report("segmenting", 0.0)
            t0 = time.perf_counter()
            regions = await asyncio.to_thread(speech_regions, samples, rate, self.vad_options)
            chunks = merge_chunks(regions)
            timed("segmenting", t0)
            report("segmenting", 1.0)

            report("transcribing", 0.0)
            t0 = time.perf_counter()
            language, segments = await self._transcribe_chunks(samples, chunks, request, key, lambda f: report("transcribing", f))
            timed("transcribing", t0)
            report("transcribing", 1.0)

            turns: tuple[SpeakerTurn, ...] = ()
            if request.diarize or request.features:
                stage = "diarizing" if request.diarize else "analysing"
                report(stage, 0.0)
                task = AnalysisTask(samples, rate, tuple((r.start_s, r.end_s) for r in regions),
                                    tuple((s.start_s, s.end_s) for s in segments), diarize=request.diarize,
                                    num_speakers=request.num_speakers, max_speakers=self.max_speakers, features=request.features)
                out = await self.analysis.run(task)
                if request.diarize:
                    timings.append(StageTiming("diarizing", out.diarize_s, out.diarize_s / duration_s if duration_s else 0.0))
                    report("diarizing", 1.0)
                    turns = out.turns
                    segments = assign_speakers(segments, turns)
                if request.features:
                    timings.append(StageTiming("analysing", out.features_s, out.features_s / duration_s if duration_s else 0.0))
                    segments = [_with_features(s, f) for s, f in zip(segments, out.features)]
                    report("analysing", 1.0)
        except asyncio.CancelledError:
            self.backend.cancel_session(key)
            raise
        text = " ".join(s.text for s in segments if s.text).strip()
        speakers = speaker_summaries(turns, segments) if request.diarize else ()
        return BatchResult(language, duration_s, text, tuple(segments), speakers, turns, tuple(timings))

    async def _transcribe_chunks(self, samples: np.ndarray, chunks: list[Chunk], request: BatchRequest, key: Hashable,
                                 progress: Callable[[float], None]) -> tuple[str, list[BatchSegment]]:
        rate = ASR_SAMPLE_RATE_HZ
        decode = BatchDecode(word_timestamps=request.word_timestamps, initial_prompt=request.prompt, temperature=request.temperature)
        total_s = sum(c.duration_s for c in chunks) or 1.0
        finished_s = 0.0
        results: dict[int, UtteranceResult] = {}

        async def run(chunk: Chunk, language: LanguageRequest | None) -> None:
            nonlocal finished_s
            pcm = (np.clip(samples[int(round(chunk.start_s * rate)): int(round(chunk.end_s * rate))], -1.0, 1.0) * 32767.0).astype("<i2")
            future = await self.backend.submit(key, UtteranceJob(pcm.tobytes(), language=language, batch=decode))
            try:
                results[chunk.index] = await future
            except AsrError as exc:
                raise AsrError(f"transcription failed on the chunk at {chunk.start_s:.1f}-{chunk.end_s:.1f} s: {exc}") from exc
            finished_s += chunk.duration_s
            progress(finished_s / total_s)

        language_code = request.language
        rest = chunks
        if language_code is None and chunks:
            await run(chunks[0], None)  # the engine's default: the server's model.language, else detection
            language_code = results[chunks[0].index].transcript.language or None
            rest = chunks[1:]
        fixed = LanguageRequest(fixed=language_code) if language_code else None
        gate = asyncio.Semaphore(self.max_in_flight)

        async def gated(chunk: Chunk) -> None:
            async with gate:
                await run(chunk, fixed)

        tasks = [asyncio.ensure_future(gated(c)) for c in rest]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        segments = []
        for chunk in chunks:
            segments.extend(_chunk_segments(chunk, results[chunk.index], start_id=len(segments)))
        return language_code or "", segments


def _chunk_segments(chunk: Chunk, result: UtteranceResult, start_id: int) -> list[BatchSegment]:
    """The chunk's segments in file time (clipped to the chunk), empty ones left out; none when the
    engine emptied the transcript (a fragment judged no speech, or every decode looped)."""
    if not result.transcript.text:
        return []
    out = []
    off, end = chunk.start_s, chunk.end_s
    for seg in result.transcript.segments:
        text = seg.text.strip()
        if not text:
            continue
        words = tuple(BatchWord(w.word, round(min(off + w.start_s, end), 3), round(min(off + w.end_s, end), 3), w.probability)
                      for w in seg.words)
        out.append(BatchSegment(start_id + len(out), round(min(off + seg.start_s, end), 3), round(min(off + seg.end_s, end), 3), text,
                                seg.avg_logprob, seg.no_speech_prob, seg.compression_ratio, words))
    return out


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _speaker_at(start_s: float, end_s: float, turns: tuple[SpeakerTurn, ...]) -> str | None:
    """The speaker whose turns overlap ``start_s..end_s`` most; if none overlaps, the nearest turn's."""
    if not turns:
        return None
    by: Counter[str] = Counter()
    for t in turns:
        o = _overlap(start_s, end_s, t.start_s, t.end_s)
        if o > 0:
            by[t.speaker] += o
    if by:
        return by.most_common(1)[0][0]
    mid = (start_s + end_s) / 2
    return min(turns, key=lambda t: 0.0 if t.start_s <= mid <= t.end_s else min(abs(mid - t.start_s), abs(mid - t.end_s))).speaker


def assign_speakers(segments: list[BatchSegment], turns: tuple[SpeakerTurn, ...]) -> list[BatchSegment]:
    """Each word gets the speaker of the turn overlapping it most (the nearest turn if none);
    each segment the speaker of most of its words' time, or of its own time without words."""
    out = []
    for seg in segments:
        words = tuple(replace(w, speaker=_speaker_at(w.start_s, w.end_s, turns)) for w in seg.words)
        if words:
            time_by: Counter[str] = Counter()
            for w in words:
                if w.speaker is not None:
                    time_by[w.speaker] += max(w.end_s - w.start_s, 0.01)
            speaker = time_by.most_common(1)[0][0] if time_by else None
        else:
            speaker = _speaker_at(seg.start_s, seg.end_s, turns)
        out.append(replace(seg, words=words, speaker=speaker))
    return out


def speaker_summaries(turns: tuple[SpeakerTurn, ...], segments: list[BatchSegment]) -> tuple[SpeakerSummary, ...]:
    """Per speaker (sorted by id): total speech in its turns (seconds,
    :func:`~whisper_streaming.analyzers.diarization.speaker_summaries`) and the number of
    transcribed segments labelled with it."""
    counts = Counter(s.speaker for s in segments if s.speaker is not None)
    return tuple(replace(s, segments=counts.get(s.id, 0)) for s in turn_summaries(turns))


def _with_features(segment: BatchSegment, features: AcousticFeatures) -> BatchSegment:
    return replace(segment, features=features)
