"""``cancel_session`` that empties the streams' queue wakes a worker waiting for batch work at once
(not after ``batch_live_window_s`` or when another worker frees up)."""

from __future__ import annotations

import asyncio
import time

import pytest

from fakes import pcm
from test_pool import result, run_pool
from test_pool_batch import batch
from whisper_streaming.backends.base import UtteranceJob
from whisper_streaming.backends.pool import ProcessPool

pytestmark = pytest.mark.timeout(60)


def test_cancel_session_lets_an_idle_worker_take_a_queued_chunk(tmp_path):
    async def body(pool: ProcessPool) -> None:
        running = await pool.submit("caller", UtteranceJob(pcm(1, 1500)))
        queued = await pool.submit("caller", UtteranceJob(pcm(2, 10)))  # waits: its session has one running
        chunk = await pool.submit("file", batch(3, 10))  # waits: a stream's utterance is queued
        await asyncio.sleep(0.2)
        assert pool.capacity().idle_slots == 1 and pool.capacity().batch_slots == 0
        pool.cancel_session("caller")
        assert queued.cancelled()
        t0 = time.monotonic()
        await result(chunk)
        assert time.monotonic() - t0 < 0.8  # before the running utterance ends (1.5 s)
        assert not running.done()
        await result(running)

    run_pool(tmp_path, body, workers=2, pause_partials_at=None, batch_live_window_s=30.0)
