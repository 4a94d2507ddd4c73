"""BatchTranscriber with a fake backend and a fake analysis process (no model)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.backends.base import AsrBackend, BackendStatus, Capacity, UtteranceJob, UtteranceResult
from whisper_streaming.batch.analysis import AnalysisOutput, AnalysisTask
from whisper_streaming.batch.request import BatchRequest
from whisper_streaming.batch.service import BatchTranscriber, assign_speakers, speaker_summaries
from whisper_streaming.core.batch import AcousticFeatures, BatchSegment, BatchWord, SpeakerTurn
from whisper_streaming.core.transcript import Transcript, TranscriptSegment, TranscriptWord
from whisper_streaming.errors import AsrError
from whisper_streaming.pipeline.vad import VadOptions

DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "data"
RATE = 16000


class FakeBackend(AsrBackend):
    """Each chunk: one segment over the chunk's audio with two words; language 'en' (or the fixed one)."""

    def __init__(self, delay_s: float = 0.01, fail_at: int | None = None, emptied_at: int | None = None) -> None:
        self.emptied_at = emptied_at  # this chunk's transcript text is emptied (judged no speech), its segment kept
        self.jobs: list[UtteranceJob] = []
        self.in_flight = self.max_in_flight = 0
        self.cancelled: list[Hashable] = []
        self.delay_s = delay_s
        self.fail_at = fail_at

    async def start(self) -> None: ...

    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        self.jobs.append(job)
        index = len(self.jobs) - 1
        fut: asyncio.Future[UtteranceResult] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            await asyncio.sleep(self.delay_s)
            self.in_flight -= 1
            if index == self.fail_at:
                fut.set_exception(AsrError("worker died twice"))
                return
            d = len(job.pcm) / 2 / RATE
            words = (TranscriptWord(0.1, 0.5, " hello", 0.9), TranscriptWord(0.6, d - 0.1, f" chunk{index}", 0.8))
            seg = TranscriptSegment(0.0, d, f" hello chunk{index}", -0.2, 0.01, 1.1, words)
            language = job.language.fixed if job.language is not None and job.language.fixed else "en"
            text = "" if index == self.emptied_at else f"hello chunk{index}"
            fut.set_result(UtteranceResult(Transcript(text, language, 0.97, (seg,), d)))

        asyncio.get_running_loop().create_task(work())
        return fut

    def cancel_session(self, session_key: Hashable) -> None:
        self.cancelled.append(session_key)

    def capacity(self) -> Capacity:
        return Capacity(idle_slots=1, queue_depth=0, slots=2)

    def status(self) -> BackendStatus:
        return BackendStatus((), 0, 0, 0, 0)

    async def close(self) -> None: ...


class FakeAnalysis:
    def __init__(self) -> None:
        self.tasks: list[AnalysisTask] = []

    async def run(self, task: AnalysisTask) -> AnalysisOutput:
        self.tasks.append(task)
        mid = len(task.samples) / task.sample_rate_hz / 2
        turns = (SpeakerTurn(0.0, mid, "SPEAKER_00"), SpeakerTurn(mid, len(task.samples) / task.sample_rate_hz, "SPEAKER_01")) if task.diarize else ()
        feats = tuple(AcousticFeatures(-20.0, 150.0, 120.0, 180.0, 0.5, 1000.0, 2000.0, (0.0,) * 13) for _ in task.segment_spans) if task.features else ()
        return AnalysisOutput(turns, feats, 0.01, 0.01)

    def close(self) -> None: ...


def speech(seconds_each: float = 4.0, count: int = 4) -> np.ndarray:
    """JFK's speech repeated ``count`` times with 6 s of silence between (pauses start new chunks)."""
    jfk, rate = sf.read(DATA / "jfk.wav", dtype="float32")
    assert rate == RATE
    part = jfk[: int(seconds_each * RATE)]
    gap = np.zeros(6 * RATE, dtype=np.float32)
    return np.concatenate([x for _ in range(count) for x in (part, gap)])


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def transcriber(backend: FakeBackend, analysis: FakeAnalysis | None = None, **kw) -> BatchTranscriber:  # noqa: ANN003
    return BatchTranscriber(backend, vad_options=VadOptions(), analysis=analysis or FakeAnalysis(), **kw)  # type: ignore[arg-type]


def test_chunks_come_back_in_file_time_with_words_and_one_language():
    backend = FakeBackend()
    samples = speech()
    progress: list[tuple[float, str]] = []
    result = run(transcriber(backend, max_in_flight=2).transcribe(samples, BatchRequest(word_timestamps=True), key="f",
                                                                  on_progress=lambda p, s: progress.append((p, s))))
    assert len(backend.jobs) == 4 and len(result.segments) == 4
    assert backend.jobs[0].language is None  # the first chunk: the engine's default (model.language, else detect) ...
    assert all(j.language.fixed == "en" for j in backend.jobs[1:])  # ... and the rest are decoded in it
    assert all(j.batch is not None and j.batch.word_timestamps for j in backend.jobs)
    assert result.language == "en" and result.duration_s == pytest.approx(len(samples) / RATE)
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts) and starts[1] >= 9.5  # the second chunk starts after the first 10 s block
    for seg in result.segments:
        assert seg.words and seg.start_s <= seg.words[0].start_s <= seg.words[-1].end_s <= seg.end_s
    assert [s.id for s in result.segments] == [0, 1, 2, 3]
    assert result.text.startswith("hello chunk0 hello chunk")
    percents = [p for p, _ in progress]
    assert percents == sorted(percents) and percents[-1] <= 100.0
    assert {s for _, s in progress} == {"segmenting", "transcribing"}
    assert [t.stage for t in result.timings] == ["segmenting", "transcribing"]


def test_a_given_language_is_used_for_every_chunk_and_chunks_run_side_by_side():
    backend = FakeBackend(delay_s=0.2)
    run(transcriber(backend, max_in_flight=2).transcribe(speech(), BatchRequest(language="de"), key="f"))
    assert all(j.language.fixed == "de" for j in backend.jobs)
    assert backend.max_in_flight == 2


def test_max_in_flight_bounds_the_chunks_submitted_at_once():
    backend = FakeBackend(delay_s=0.05)
    run(transcriber(backend, max_in_flight=1).transcribe(speech(), BatchRequest(language="en"), key="f"))
    assert backend.max_in_flight == 1


def test_diarization_and_features_label_segments_and_words():
    backend, analysis = FakeBackend(), FakeAnalysis()
    request = BatchRequest(word_timestamps=True, diarize=True, num_speakers=2, features=True)
    result = run(transcriber(backend, analysis).transcribe(speech(), request, key="f"))
    task = analysis.tasks[0]
    assert task.diarize and task.features and task.num_speakers == 2
    assert len(task.segment_spans) == len(result.segments)
    assert [s.speaker for s in result.segments] == ["SPEAKER_00", "SPEAKER_00", "SPEAKER_01", "SPEAKER_01"]
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words)
    assert all(s.features is not None and s.features.f0_median_hz == 150.0 for s in result.segments)
    assert [sp.id for sp in result.speakers] == ["SPEAKER_00", "SPEAKER_01"]
    assert sum(sp.total_speech_s for sp in result.speakers) == pytest.approx(result.duration_s)
    assert [t.stage for t in result.timings] == ["segmenting", "transcribing", "diarizing", "analysing"]


def test_a_failed_chunk_fails_the_file_with_its_time():
    backend = FakeBackend(fail_at=2)
    with pytest.raises(AsrError, match=r"chunk at \d+\.\d-\d+\.\d s"):
        run(transcriber(backend).transcribe(speech(), BatchRequest(language="en"), key="f"))


def test_cancelling_drops_the_files_queued_chunks():
    backend = FakeBackend(delay_s=5.0)

    async def main() -> None:
        task = asyncio.ensure_future(transcriber(backend).transcribe(speech(), BatchRequest(language="en"), key="file-7"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert backend.cancelled == ["file-7"]


def test_silence_gives_an_empty_result():
    result = run(transcriber(FakeBackend()).transcribe(np.zeros(RATE * 5, dtype=np.float32), BatchRequest(), key="f"))
    assert result.segments == () and result.text == ""


def test_speaker_of_a_word_is_the_turn_overlapping_it_most_else_the_nearest():
    turns = (SpeakerTurn(0.0, 2.0, "A"), SpeakerTurn(2.0, 4.0, "B"), SpeakerTurn(6.0, 7.0, "A"))
    seg = BatchSegment(0, 1.0, 5.5, "x y z", -0.1, 0.0, 1.0,
                       (BatchWord(" x", 1.0, 2.4, 0.9), BatchWord(" y", 2.4, 3.9, 0.9), BatchWord(" z", 4.6, 5.5, 0.9)))
    labelled = assign_speakers([seg], turns)[0]
    assert [w.speaker for w in labelled.words] == ["A", "B", "A"]  # z overlaps nothing: nearest is A at 6.0
    assert labelled.speaker == "A"  # most of the words' time: x and z, 2.3 s against y's 1.5 s
    no_words = assign_speakers([BatchSegment(1, 2.5, 3.5, "q", -0.1, 0.0, 1.0)], turns)[0]
    assert no_words.speaker == "B"
    summaries = speaker_summaries(turns, [labelled, no_words])
    assert [(s.id, s.total_speech_s, s.segments) for s in summaries] == [("A", 3.0, 1), ("B", 2.0, 1)]


def test_the_requests_prompt_and_temperature_reach_every_chunk() -> None:
    backend = FakeBackend()
    run(transcriber(backend).transcribe(speech(count=2), BatchRequest(language="en", prompt="Acme Corp.", temperature=0.2), key="f"))
    assert [(j.batch.initial_prompt, j.batch.temperature, j.batch.word_timestamps) for j in backend.jobs] == [("Acme Corp.", 0.2, False)] * 2


def test_a_chunk_the_engine_judged_no_speech_gives_no_segments() -> None:
    result = run(transcriber(FakeBackend(emptied_at=1)).transcribe(speech(count=3), BatchRequest(language="en"), key="f"))
    assert [s.text for s in result.segments] == ["hello chunk0", "hello chunk2"]
    assert "chunk1" not in result.text
