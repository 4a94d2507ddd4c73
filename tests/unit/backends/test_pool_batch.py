"""Batch chunks (``UtteranceJob.batch``) in a ProcessPool with fake engines: low priority,
never in the way of a stream's utterances, every worker when no stream is live."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import fakes
from fakes import RAISE, SPIN, pcm, text_for
from test_pool import PAUSE_ONLY_WITH_PROC, busy_partial_pid, process_state, result, run_pool
from whisper_streaming.backends.base import UtteranceJob
from whisper_streaming.backends.pool import ProcessPool
from whisper_streaming.engines.base import BatchDecode
from whisper_streaming.errors import AsrError

pytestmark = pytest.mark.timeout(60)

CHUNK = BatchDecode(word_timestamps=True)


def batch(tag: int, ms: int = 0) -> UtteranceJob:
    return UtteranceJob(pcm(tag, ms), batch=CHUNK)


def calls(tmp_path: Path, log: str = "calls.log") -> list[int]:
    return [tag for _, tag in fakes.calls(tmp_path, log)]


def test_a_file_uses_every_worker_when_no_stream_is_live(tmp_path):
    async def body(pool: ProcessPool) -> None:
        futures = [await pool.submit("file", batch(i, 2000)) for i in range(2)]  # long enough to tell side by side from in turn on a loaded machine
        deadline = time.monotonic() + 1.8
        while pool.capacity().batch_slots < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert pool.capacity().batch_slots == 2  # side by side, not one after the other
        done = [await result(f) for f in futures]
        assert [t.text for t in done] == [text_for(0), text_for(1)]
        assert len({fakes.pid_of(t) for t in done}) == 2
        # the engine was told each was a chunk of a file (two processes append to both logs: any order)
        assert sorted(calls(tmp_path, "batch.log")) == sorted(calls(tmp_path)) == [0, 1]

    run_pool(tmp_path, body, workers=2, pause_partials_at=None)


def test_a_streaming_utterance_goes_before_queued_chunks(tmp_path):
    async def body(pool: ProcessPool) -> None:
        first = await pool.submit("file", batch(1, 300))
        queued = [await pool.submit("file", batch(i, 50)) for i in (2, 3)]
        await asyncio.sleep(0.1)  # chunk 1 runs, 2 and 3 wait
        live = await pool.submit("caller", UtteranceJob(pcm(10, 50)))
        for f in [first, live, *queued]:
            await result(f)
        assert calls(tmp_path) == [1, 10, 2, 3]

    run_pool(tmp_path, body, workers=1, pause_partials_at=None)


def test_while_a_stream_is_live_chunks_leave_it_a_worker(tmp_path):
    async def body(pool: ProcessPool) -> None:
        await result(await pool.submit("caller", UtteranceJob(pcm(10, 10))))  # the stream is live now
        chunks = [await pool.submit("file", batch(i, 300)) for i in range(4)]
        await asyncio.sleep(0.1)
        assert pool.capacity().idle_slots == 1  # one chunk at a time: one worker waits for the stream
        assert pool.capacity().batch_slots == 1
        t0 = time.monotonic()
        live = await pool.submit("caller", UtteranceJob(pcm(11, 50)))
        assert (await result(live)).text == text_for(11)
        assert time.monotonic() - t0 < 0.25  # never queued behind a chunk
        for f in chunks:
            await result(f)

    run_pool(tmp_path, body, workers=2, pause_partials_at=None, batch_live_window_s=30.0)


def test_when_the_stream_goes_quiet_the_reserved_worker_takes_chunks(tmp_path):
    async def body(pool: ProcessPool) -> None:
        await result(await pool.submit("caller", UtteranceJob(pcm(10, 10))))
        chunks = [await pool.submit("file", batch(i, 600)) for i in range(4)]
        await asyncio.sleep(0.1)
        assert pool.capacity().idle_slots == 1
        await asyncio.sleep(0.5)  # past batch_live_window_s: no stream is live any more
        assert pool.capacity().idle_slots == 0
        for f in chunks:
            await result(f)

    run_pool(tmp_path, body, workers=2, pause_partials_at=None, batch_live_window_s=0.3)


@PAUSE_ONLY_WITH_PROC
def test_a_chunk_is_paused_while_a_streaming_final_runs(tmp_path):
    async def body(pool: ProcessPool) -> None:
        chunk = await pool.submit("file", batch(SPIN, 400))
        pid = await busy_partial_pid(pool)  # the worker that runs the SPIN job
        await asyncio.sleep(0.1)
        assert process_state(pid) in "RS"
        final = await pool.submit("caller", UtteranceJob(pcm(11, 500)))
        await asyncio.sleep(0.2)
        assert process_state(pid) == "T"  # the final has the CPU
        assert (await result(final)).text == text_for(11)
        assert (await result(chunk)).text == text_for(SPIN)

    run_pool(tmp_path, body, workers=2, pause_partials_at=1)


def test_cancel_session_drops_queued_chunks_and_a_failing_chunk_is_retried_then_fails(tmp_path):
    async def body(pool: ProcessPool) -> None:
        running = await pool.submit("file", batch(1, 300))
        queued = [await pool.submit("file", batch(i, 10)) for i in (2, 3)]
        await asyncio.sleep(0.1)
        pool.cancel_session("file")
        assert all(f.cancelled() for f in queued)
        await result(running)
        failing = await pool.submit("file2", batch(RAISE))
        with pytest.raises(AsrError):
            await result(failing)
        assert calls(tmp_path).count(RAISE) == 2  # retried once, on the batch queue
        assert 2 not in calls(tmp_path) and 3 not in calls(tmp_path)

    run_pool(tmp_path, body, workers=1, pause_partials_at=None, max_attempts=2)
