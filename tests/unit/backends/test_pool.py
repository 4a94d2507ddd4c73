"""ProcessPool with fake engines (tests/fakes.py) in real ``spawn``-ed worker processes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

import fakes
from fakes import CRASH, CRASH_ONCE, HANG, HANG_ONCE, RAISE, SPIN, STAGED, STAGED_DECODE_S, pcm, text_for
from whisper_streaming.engines.base import EngineOptions
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import AsrError, ConfigError, ModelError
from whisper_streaming.backends.base import BackendStatus, EngineState, UtteranceJob, UtteranceResult
from whisper_streaming.backends.pool import PoolOptions, ProcessPool
from whisper_streaming.analyzers.sentiment_registry import sentiment_analyzer_spec
from whisper_streaming.analyzers.sentiment import Sentiment, SentimentOptions

pytestmark = pytest.mark.timeout(60)

IDLE, BUSY, RESTARTING, STARTING, STOPPED = (
    EngineState.IDLE,
    EngineState.BUSY,
    EngineState.RESTARTING,
    EngineState.STARTING,
    EngineState.STOPPED,
)
WAIT_S = 15.0  # generous upper bound for anything that should happen "soon"


# --------------------------------------------------------------------------- helpers


def pool_options(tmp_path: Path, **kw: Any) -> PoolOptions:
    kw.setdefault("engine_factory", fakes.make_engine)
    return PoolOptions(EngineOptions(engine="fake", model=str(tmp_path)), **kw)


def worker_processes() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("whisper-streaming-asr")]


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def run_pool(tmp_path: Path, body: Callable[[ProcessPool], Awaitable[None]], **kw: Any) -> None:
    """Start a pool, run ``body(pool)``, close it, and check no worker survived."""

    async def main() -> None:
        pool = ProcessPool(pool_options(tmp_path, **kw))
        await asyncio.wait_for(pool.start(), WAIT_S)
        try:
            await body(pool)
        finally:
            pids = [p.pid for p in worker_processes()]
            await pool.close()
        assert pool.status().engines == (STOPPED,) * pool.options.workers
        assert_gone(pids)

    asyncio.run(main())
    assert worker_processes() == []


async def result(fut: asyncio.Future[UtteranceResult]) -> Transcript:
    return (await asyncio.wait_for(asyncio.shield(fut), WAIT_S)).transcript


async def wait_status(pool: ProcessPool, pred: Callable[[BackendStatus], bool], timeout: float = WAIT_S) -> BackendStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = pool.status()
        if pred(st):
            return st
        assert time.monotonic() < deadline, f"status never matched; last {st}"
        await asyncio.sleep(0.005)


class StatusRecorder:
    """Polls ``pool.status()`` every few ms in the background and keeps every state seen."""

    def __init__(self, pool: ProcessPool) -> None:
        self.pool = pool
        self.seen: list[BackendStatus] = []
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            self.seen.append(self.pool.status())
            await asyncio.sleep(0.002)

    def states(self) -> set[EngineState]:
        return {s for st in self.seen for s in st.engines}

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def call_tags(tmp_path: Path) -> list[int]:
    return [tag for _, tag in fakes.calls(tmp_path)]


def call_pids(tmp_path: Path, tag: int) -> list[int]:
    return [pid for pid, t in fakes.calls(tmp_path) if t == tag]


def minimal_calls(tmp_path: Path) -> list[tuple[int, int]]:
    """``(pid, tag)`` of the transcribe calls made with ``minimal=True``."""
    return fakes.calls(tmp_path, "minimal.log")


# --------------------------------------------------------------------------- normal work


def test_status_before_start_shows_starting_engines(tmp_path):
    pool = ProcessPool(pool_options(tmp_path, workers=3))
    assert pool.status() == BackendStatus((STARTING,) * 3, 0, 0, 0, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_results_are_the_engine_transcripts(tmp_path, workers):
    async def body(pool: ProcessPool) -> None:
        assert pool.status() == BackendStatus((IDLE,) * workers, 0, 0, 0, 0)
        futures = [await pool.submit("s", UtteranceJob(pcm(tag, n=160 * (tag + 1)))) for tag in range(6)]
        transcripts = [await result(f) for f in futures]
        assert [t.text for t in transcripts] == [text_for(tag) for tag in range(6)]
        assert [t.audio_duration_s for t in transcripts] == pytest.approx([0.01 * (tag + 1) for tag in range(6)])
        pids = {p.pid for p in worker_processes()}
        assert len(pids) == workers and {fakes.pid_of(t) for t in transcripts} <= pids
        assert os.getpid() not in pids  # the model never runs in the server process
        assert pool.status() == BackendStatus((IDLE,) * workers, 0, 0, 6, 0)

    run_pool(tmp_path, body, workers=workers)


def test_two_sessions_many_utterances_two_workers_all_complete(tmp_path):
    n = 15

    async def session(pool: ProcessPool, key: str, base: int) -> list[Transcript]:
        # More utterances than the per-session bound: submit() applies backpressure.
        futures = [await pool.submit(key, UtteranceJob(pcm(base + i, 10))) for i in range(n)]
        return [await result(f) for f in futures]

    async def body(pool: ProcessPool) -> None:
        a, b = await asyncio.gather(session(pool, "A", 0), session(pool, "B", 100))
        assert [t.text for t in a] == [text_for(i) for i in range(n)]
        assert [t.text for t in b] == [text_for(100 + i) for i in range(n)]
        # 10 ms per utterance and one blocked slot: both workers took a share.
        assert len({fakes.pid_of(t) for t in a + b}) == 2
        st = pool.status()
        assert st.utterances_done == 2 * n and st.utterances_queued == 0 and st.utterances_failed == 0

    run_pool(tmp_path, body, workers=2, max_queued=8, max_queued_per_session=3)


def test_pool_serves_sessions_round_robin(tmp_path):
    async def body(pool: ProcessPool) -> None:
        flood = [await pool.submit("A", UtteranceJob(pcm(i, 30))) for i in range(6)]
        late = await pool.submit("B", UtteranceJob(pcm(100)))
        await result(late)
        await asyncio.gather(*(result(f) for f in flood))
        tags = call_tags(tmp_path)
        # B's one utterance waited for at most one of A's queued ones (plus one in flight).
        assert tags.index(100) <= 2, tags
        assert sorted(tags) == [0, 1, 2, 3, 4, 5, 100]

    run_pool(tmp_path, body, workers=1)


def test_status_shows_busy_engine_and_queued_utterances(tmp_path):
    async def body(pool: ProcessPool) -> None:
        futures = [await pool.submit("s", UtteranceJob(pcm(0, 400)))]
        futures += [await pool.submit("s", UtteranceJob(pcm(i))) for i in (1, 2, 3)]
        st = await wait_status(pool, lambda st: st.engines == (BUSY,))
        assert st.utterances_queued == 3
        assert st.utterances_done == 0
        await result(futures[0])
        await asyncio.gather(*(result(f) for f in futures))
        assert pool.status() == BackendStatus((IDLE,), 0, 0, 4, 0)

    run_pool(tmp_path, body, workers=1)


# --------------------------------------------------------------------------- failures


def test_worker_crash_on_first_attempt_is_restarted_and_job_retried(tmp_path):
    async def body(pool: ProcessPool) -> None:
        first_pid = worker_processes()[0].pid
        crashing = await pool.submit("A", UtteranceJob(pcm(CRASH_ONCE, 1)))
        later = [await pool.submit("A", UtteranceJob(pcm(i))) for i in (1, 2)]
        other = await pool.submit("B", UtteranceJob(pcm(7)))
        t = await result(crashing)
        assert t.text == text_for(CRASH_ONCE)
        assert [(await result(f)).text for f in later] == [text_for(1), text_for(2)]
        assert (await result(other)).text == text_for(7)
        # The retry went first in line (before A's later utterances and B's), then round robin.
        assert call_tags(tmp_path) == [CRASH_ONCE, CRASH_ONCE, 7, 1, 2]
        # Two attempts, in two different processes; the second is a fresh worker.
        pids = call_pids(tmp_path, CRASH_ONCE)
        assert len(pids) == 2 and pids[0] == first_pid and pids[1] != first_pid
        assert fakes.pid_of(t) == pids[1] == worker_processes()[0].pid
        assert pool.status() == BackendStatus((IDLE,), 0, 1, 4, 0)
        assert minimal_calls(tmp_path) == []  # a crash is retried at full cost: no minimal decode

    run_pool(tmp_path, body, workers=1)


def test_a_partial_is_decoded_minimal_never_retried_and_never_holds_back_its_session(tmp_path):
    async def body(pool: ProcessPool) -> None:
        ok = await pool.submit("A", UtteranceJob(pcm(3), partial=True))
        assert (await result(ok)).text == text_for(3)
        assert [tag for _, tag in minimal_calls(tmp_path)] == [3]  # a partial is the engine's minimal decode
        crashing = await pool.submit("A", UtteranceJob(pcm(CRASH_ONCE, 1), partial=True))
        with pytest.raises(AsrError):
            await result(crashing)
        assert call_tags(tmp_path).count(CRASH_ONCE) == 1  # not retried: a later partial comes with more audio
        # a partial running does not count as the session's running utterance: its final starts at once
        slow = await pool.submit("A", UtteranceJob(pcm(10, 600), partial=True))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        final = await pool.submit("A", UtteranceJob(pcm(11, 50)))
        assert (await result(final)).text == text_for(11)
        assert time.monotonic() - t0 < 0.45  # did not wait for the 0.6 s partial
        await result(slow)

    run_pool(tmp_path, body, workers=2)


def process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat: R running, S sleeping, T stopped."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def busy_partial_pid(pool: ProcessPool) -> int:
    """The pid of the worker that started the SPIN job (once its engine has logged the call)."""
    deadline = time.monotonic() + WAIT_S
    while not (pids := call_pids(Path(pool.options.engine.model), SPIN)):
        assert time.monotonic() < deadline, "the SPIN job never started"
        await asyncio.sleep(0.005)
    return pids[0]


async def submit_partial(pool: ProcessPool, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
    """Submit a partial once a partial worker is ready (it loads beside the workers of the finals)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        if pool.capacity().partial_worker_ready and pool.capacity().partial_workers:
            try:
                return await pool.submit("A", job)
            except AsrError:
                pass
        assert time.monotonic() < deadline, "no partial worker became ready"
        await asyncio.sleep(0.01)


PAUSE_ONLY_WITH_PROC = pytest.mark.skipif(not hasattr(os, "kill") or not Path("/proc/self/stat").exists(), reason="needs POSIX signals and /proc")


def test_partials_get_their_own_worker_and_are_never_queued(tmp_path):
    async def body(pool: ProcessPool) -> None:
        first = await submit_partial(pool, UtteranceJob(pcm(2, 300), partial=True))
        assert len(worker_processes()) == 3  # two for the finals, one for partials
        assert not pool.capacity().partial_worker_ready  # busy
        with pytest.raises(AsrError, match="no idle partial worker"):  # never queued behind the running one
            await pool.submit("B", UtteranceJob(pcm(3), partial=True))
        finals = [await pool.submit(k, UtteranceJob(pcm(10 + i, 50))) for i, k in enumerate("CD")]
        t0 = time.monotonic()
        assert [(await result(f)).text for f in finals] == [text_for(10), text_for(11)]
        assert time.monotonic() - t0 < 0.28  # both workers of the finals were free: no wait for the partial
        partial = await result(first)
        assert partial.text == text_for(2)
        final_pids = {fakes.pid_of(await result(f)) for f in finals}
        assert fakes.pid_of(partial) not in final_pids
        assert [tag for _, tag in minimal_calls(tmp_path)] == [2]  # a minimal decode; 3 never ran
        assert pool.capacity().partial_worker_ready
        assert pool.status().engines == (IDLE, IDLE)  # %C shows the workers of the finals
        late = await pool.submit("A", UtteranceJob(pcm(4, 5000), partial=True))
        await pool.close()  # a partial in its worker (or handed over, not yet taken) is cancelled, never left pending
        assert late.cancelled()

    run_pool(tmp_path, body, workers=2, partial_workers=1, pause_partials_at=None)


@PAUSE_ONLY_WITH_PROC
def test_a_partial_worker_is_paused_while_a_final_runs_and_resumed_after(tmp_path):
    async def body(pool: ProcessPool) -> None:
        partial = await submit_partial(pool, UtteranceJob(pcm(SPIN, 400), partial=True))
        pid = await busy_partial_pid(pool)
        await asyncio.sleep(0.1)
        assert process_state(pid) in "RS"  # running alone
        t0 = time.monotonic()
        final = await pool.submit("B", UtteranceJob(pcm(11, 500)))
        await asyncio.sleep(0.2)
        assert process_state(pid) == "T"  # a final runs: the partial waits
        assert not pool.capacity().partial_worker_ready
        assert not partial.done()
        assert (await result(final)).text == text_for(11)
        assert (await result(partial)).text == text_for(SPIN)
        assert time.monotonic() - t0 >= 0.65  # ~0.5 s paused, then the rest of its 0.4 s of CPU
        assert pool.capacity().partial_worker_ready

    run_pool(tmp_path, body, workers=2, partial_workers=1, pause_partials_at=1)


@PAUSE_ONLY_WITH_PROC
def test_a_paused_partial_does_not_time_out_and_a_higher_threshold_lets_it_run(tmp_path):
    async def body(pool: ProcessPool) -> None:
        partial = await submit_partial(pool, UtteranceJob(pcm(SPIN, 300), partial=True))
        pid = await busy_partial_pid(pool)
        long_final = await pool.submit("B", UtteranceJob(pcm(11, 3000)))
        await asyncio.sleep(0.2)
        assert process_state(pid) == "T"
        await asyncio.sleep(2.2)  # paused past its 2 s timeout (a partial gets a quarter of 8 s): not killed as hung
        assert process_state(pid) == "T"
        assert (await result(long_final)).text == text_for(11)
        assert (await result(partial)).text == text_for(SPIN)
        assert pool.status().worker_restarts == 0 and pool.status().worker_timeouts == 0

    run_pool(tmp_path, body, workers=2, partial_workers=1, pause_partials_at=1, transcribe_timeout_s=8.0, retry_timeout_fraction=0.25)

    async def body2(pool: ProcessPool) -> None:
        partial = await submit_partial(pool, UtteranceJob(pcm(SPIN, 300), partial=True))
        pid = await busy_partial_pid(pool)
        final = await pool.submit("B", UtteranceJob(pcm(11, 500)))
        await asyncio.sleep(0.2)
        assert process_state(pid) in "RS"  # one final busy, the threshold is two
        await result(final)
        await result(partial)

    for f in Path(tmp_path).glob("*.log"):
        f.unlink()
    run_pool(tmp_path, body2, workers=2, partial_workers=1, pause_partials_at=2)


_ORPHAN_PARENT = """
import asyncio, multiprocessing, sys
sys.path.insert(0, sys.argv[1])
import fakes
from whisper_streaming.backends.pool import PoolOptions, ProcessPool
from whisper_streaming.engines.base import EngineOptions

async def main():
    pool = ProcessPool(PoolOptions(EngineOptions(engine="fake", model=sys.argv[2]), workers=1, engine_factory=fakes.make_engine))
    await pool.start()
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux-only")
def test_a_paused_worker_dies_with_a_killed_server(tmp_path):
    """A worker reads EOF on its pipe and exits when the server dies, but a paused one (a partial
    worker while finals decode) cannot: the kernel kills it (PR_SET_PDEATHSIG)."""
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT, str(Path(fakes.__file__).parent), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline().split()[0])
        os.kill(worker, signal.SIGSTOP)
        deadline = time.monotonic() + WAIT_S
        while process_state(worker) != "T":  # the signal is delivered asynchronously
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + WAIT_S
    try:
        while True:
            try:
                state = process_state(worker)
            except FileNotFoundError:
                break
            if state == "Z":  # dead, not yet reaped by whoever adopted it
                break
            assert time.monotonic() < deadline, f"the paused worker outlived its server (state {state})"
            time.sleep(0.05)
    finally:
        try:
            os.kill(worker, signal.SIGKILL)  # never leave a stopped orphan behind, pass or fail
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_crashing_every_time_fails_only_that_utterance(tmp_path, workers):
    async def body(pool: ProcessPool) -> None:
        bad = await pool.submit("A", UtteranceJob(pcm(CRASH)))
        good = [await pool.submit("B", UtteranceJob(pcm(i))) for i in (1, 2, 3)]
        with pytest.raises(AsrError, match="died"):
            await result(bad)
        assert [(await result(f)).text for f in good] == [text_for(i) for i in (1, 2, 3)]
        assert len(set(call_pids(tmp_path, CRASH))) == 2  # tried twice, in two processes
        st = await wait_status(pool, lambda st: st.engines == (IDLE,) * workers)
        assert st.worker_restarts == 2 and st.utterances_failed == 1 and st.utterances_done == 3
        # The pool keeps working, for both sessions.
        again = [await pool.submit(key, UtteranceJob(pcm(50 + i))) for i, key in enumerate("AB")]
        assert [(await result(f)).text for f in again] == [text_for(50), text_for(51)]
        assert len(worker_processes()) == workers

    run_pool(tmp_path, body, workers=workers)


def test_hung_worker_is_killed_restarted_and_utterance_fails(tmp_path):
    async def body(pool: ProcessPool) -> None:
        rec = StatusRecorder(pool)
        t0 = time.monotonic()
        hung = await pool.submit("A", UtteranceJob(pcm(HANG)))
        others = [await pool.submit("B", UtteranceJob(pcm(i, 50))) for i in range(4)]
        # The other worker keeps serving session B meanwhile.
        assert [(await result(f)).text for f in others] == [text_for(i) for i in range(4)]
        assert not hung.done()
        with pytest.raises(AsrError, match="hung"):
            await result(hung)
        elapsed = time.monotonic() - t0
        await wait_status(pool, lambda st: st.engines == (IDLE, IDLE))
        await rec.stop()
        # transcribe_timeout_s for the first attempt, a quarter of it for the minimal retry:
        # not two full timeouts (2.0 s).
        assert 1.25 <= elapsed < 2.0
        assert RESTARTING in rec.states() and BUSY in rec.states()
        hung_pids = call_pids(tmp_path, HANG)
        assert len(set(hung_pids)) == 2
        assert minimal_calls(tmp_path) == [(hung_pids[1], HANG)]  # the retry only, as a minimal decode
        live = {p.pid for p in worker_processes()}
        assert len(live) == 2 and not live & set(hung_pids)
        assert_gone(hung_pids)  # killed, not left hanging
        st = pool.status()
        assert st.worker_restarts == 2 and st.worker_timeouts == 2 and st.utterances_failed == 1
        assert (await result(await pool.submit("A", UtteranceJob(pcm(9))))).text == text_for(9)

    run_pool(tmp_path, body, workers=2, transcribe_timeout_s=1.0)


def test_worker_hung_once_is_restarted_and_retry_succeeds(tmp_path):
    async def body(pool: ProcessPool) -> None:
        rec = StatusRecorder(pool)
        fut = await pool.submit("A", UtteranceJob(pcm(HANG_ONCE, 3)))
        assert (await result(fut)).text == text_for(HANG_ONCE)
        await rec.stop()
        assert RESTARTING in rec.states()
        assert pool.status() == BackendStatus((IDLE,), 0, 1, 1, 0, worker_timeouts=1)
        pids = call_pids(tmp_path, HANG_ONCE)
        assert len(set(pids)) == 2
        assert_gone(pids[:1])
        # The retry was a minimal decode (in the fresh worker); the next utterance is not.
        assert minimal_calls(tmp_path) == [(pids[1], HANG_ONCE)]
        assert (await result(await pool.submit("A", UtteranceJob(pcm(8))))).text == text_for(8)
        assert minimal_calls(tmp_path) == [(pids[1], HANG_ONCE)]

    run_pool(tmp_path, body, workers=1, transcribe_timeout_s=1.0)


def test_engine_without_the_minimal_keyword_serves_normal_jobs(tmp_path):
    """The worker passes ``minimal`` only when it is set: an engine written before it works."""
    async def body(pool: ProcessPool) -> None:
        futures = [await pool.submit("s", UtteranceJob(pcm(i))) for i in range(3)]
        assert [(await result(f)).text for f in futures] == [text_for(i) for i in range(3)]
        assert pool.status().utterances_failed == 0

    run_pool(tmp_path, body, workers=1, engine_factory=fakes.make_plain_engine)


def _withdraw_while_running(tmp_path: Path, factory: Callable[[EngineOptions], fakes.FakeEngine]) -> tuple[float, BackendStatus]:
    """Submit a STAGED job (300 ms "encoder", 3 s "decode"), cancel its future while it runs, then
    submit another: the seconds from the cancel until the next job's result, and the status."""
    out: list[Any] = []

    async def body(pool: ProcessPool) -> None:
        withdrawn = await pool.submit("s", UtteranceJob(pcm(STAGED, 300)))
        deadline = time.monotonic() + WAIT_S
        while STAGED not in call_tags(tmp_path):  # the engine has the job (not merely the pipe)
            assert time.monotonic() < deadline, "the STAGED job never reached the engine"
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        withdrawn.cancel()  # as the driver does for a speculation whose speech resumed
        nxt = await pool.submit("s", UtteranceJob(pcm(1)))
        assert (await result(nxt)).text == text_for(1)
        out.extend([time.monotonic() - t0, pool.status()])

    run_pool(tmp_path, body, workers=1, engine_factory=factory)
    return out[0], out[1]


def test_a_job_withdrawn_while_running_is_given_up_after_its_encoder_stage(tmp_path):
    waited_s, status = _withdraw_while_running(tmp_path, fakes.make_engine)
    assert waited_s < STAGED_DECODE_S / 2  # the "decode" never ran
    assert status.jobs_stopped == 1 and status.utterances_failed == 0 and status.worker_restarts == 0
    assert len(fakes.calls(tmp_path, "stopped.log")) == 1


def test_an_engine_without_should_stop_runs_a_withdrawn_job_to_its_end(tmp_path):
    waited_s, status = _withdraw_while_running(tmp_path, fakes.make_plain_engine)
    assert waited_s >= STAGED_DECODE_S - 0.5
    assert status.jobs_stopped == 0 and status.utterances_failed == 0 and status.worker_restarts == 0


def test_a_job_not_withdrawn_is_never_stopped(tmp_path):
    async def body(pool: ProcessPool) -> None:
        fut = await pool.submit("s", UtteranceJob(pcm(STAGED, 50)))
        assert (await result(fut)).text == text_for(STAGED)
        assert pool.status().jobs_stopped == 0

    run_pool(tmp_path, body, workers=1)
    assert fakes.calls(tmp_path, "stopped.log") == []


@pytest.mark.parametrize("throttle", [True, False], ids=["throttled", "off"])
def test_a_costly_session_waits_while_another_is_served_at_once(tmp_path, caplog, throttle):
    """Session A's utterance holds the only worker 0.6 s (on 10 ms of audio); its allowance is
    0.03 worker-s per second after a burst of 0.3, so it owes 0.3 worker-s, 10 s of waiting.
    B's utterance, queued behind A's next one, goes first and at once; A's next one follows
    right after, without waiting for A's debt: with one worker (no reserve) and nobody else
    queued, a held session is served (work-conserving).  Without the throttle, round robin
    serves A's next one first."""
    async def body(pool: ProcessPool) -> None:
        a0 = await pool.submit("A", UtteranceJob(pcm(0, 600)))
        await wait_status(pool, lambda st: st.engines == (BUSY,))
        a1 = await pool.submit("A", UtteranceJob(pcm(1)))
        b0 = await pool.submit("B", UtteranceJob(pcm(100)))
        await result(a0)
        a0_done = time.monotonic()
        if throttle:
            # The worker took B's at once; A's waits behind it, counted in the queue and as held.
            assert pool.capacity().held == 1 and pool.capacity().queue_depth == 1
        await result(b0)
        b0_s = time.monotonic() - a0_done
        await result(a1)
        a1_s = time.monotonic() - a0_done
        if throttle:
            assert call_tags(tmp_path) == [0, 100, 1]  # A skipped in favour of B, then served
            assert b0_s < 5.0 and a1_s < 5.0  # neither waited for A's debt (10 s)
            assert pool.status().sessions_throttled == 1
            infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "throttled" in r.getMessage()]
            assert len(infos) == 1 and infos[0].startswith("session A throttled")
        else:
            assert call_tags(tmp_path) == [0, 1, 100]
            assert a1_s < 5.0
            assert pool.status().sessions_throttled == 0
        assert pool.capacity().held == 0

    with caplog.at_level(logging.INFO, logger="whisper_streaming.backends.scheduler"):
        run_pool(tmp_path, body, workers=1, throttle_worker_s_per_s=0.03 if throttle else None, throttle_burst_s=0.3)


def test_a_held_session_takes_one_of_two_workers_and_another_session_starts_at_once(tmp_path):
    """Two workers, so one is the reserve.  Session H owes 15 s (a 0.6 s utterance against a
    burst of 0.3 worker-s at 0.02 per s).  Alone, its next three utterances (0.4 s each) are
    served without waiting for that debt, but one at a time: it never holds both workers.
    B's utterance, submitted while H's are queued, starts at once on the reserve worker,
    before H's next one."""
    async def body(pool: ProcessPool) -> None:
        await result(await pool.submit("H", UtteranceJob(pcm(0, 600))))
        assert pool.status().sessions_throttled == 1
        t0 = time.monotonic()
        alone = StatusRecorder(pool)
        held = [await pool.submit("H", UtteranceJob(pcm(i, 400))) for i in (1, 2, 3)]
        st = await wait_status(pool, lambda st: BUSY in st.engines)
        cap = pool.capacity()
        assert st.engines.count(BUSY) == 1 and cap.idle_slots == 1
        assert cap.queue_depth >= 2 and cap.held == cap.queue_depth  # H's rest waits: the reserve stays free
        await asyncio.sleep(0.1)
        await alone.stop()
        b0 = await pool.submit("B", UtteranceJob(pcm(100)))
        assert (await result(b0)).text == text_for(100)
        after = StatusRecorder(pool)
        assert [(await result(f)).text for f in held] == [text_for(i) for i in (1, 2, 3)]
        elapsed = time.monotonic() - t0
        await after.stop()
        assert call_tags(tmp_path) == [0, 1, 100, 2, 3]  # B's went before H's next one
        for st in alone.seen + after.seen:
            assert st.engines.count(BUSY) <= 1, st  # H alone never held both workers
        assert elapsed >= 3 * 0.4  # H's utterances ran one after another ...
        assert elapsed < 7.5  # ... without waiting for H's debt (15 s)
        assert pool.capacity().held == 0 and pool.status().utterances_done == 5

    run_pool(tmp_path, body, workers=2, throttle_worker_s_per_s=0.02, throttle_burst_s=0.3)


def test_a_session_that_queues_many_takes_one_of_two_workers_and_a_late_one_starts_at_once(tmp_path):
    """No throttle: session F queues four 0.5 s utterances at once (a client sending faster
    than real time); it gets one worker at a time, the other stays free, and B's utterance,
    submitted after F's, starts at once (before the 8.4 s wait behind pink noise at 4x real
    time that this rule removed, docs/benchmarks.md)."""
    async def body(pool: ProcessPool) -> None:
        flood = [await pool.submit("F", UtteranceJob(pcm(i, 500))) for i in range(4)]
        await asyncio.sleep(0.2)
        assert pool.status().engines.count(BUSY) == 1  # F alone: one worker, the other kept free
        t0 = time.monotonic()
        b0 = await pool.submit("B", UtteranceJob(pcm(100, 50)))
        assert (await result(b0)).text == text_for(100)
        waited = time.monotonic() - t0
        assert [(await result(f)).text for f in flood] == [text_for(i) for i in range(4)]
        assert waited < 0.4, waited  # B did not wait for one of F's decodes (0.5 s)
        assert call_tags(tmp_path)[:2] == [0, 100]

    run_pool(tmp_path, body, workers=2, throttle_worker_s_per_s=None)


def test_starts_at_once_follows_the_reserve_worker_rule(tmp_path):
    """Two workers, one kept in reserve: while S has a job running, another job of S would wait
    in the queue (the runtime then offers no speculation for S), while B's would start at once."""
    async def body(pool: ProcessPool) -> None:
        assert pool.starts_at_once("S") and pool.starts_at_once("B")
        running = await pool.submit("S", UtteranceJob(pcm(0, 500)))
        await wait_status(pool, lambda st: st.engines.count(BUSY) == 1)
        assert pool.capacity().idle_slots == 1
        assert not pool.starts_at_once("S") and pool.starts_at_once("B")
        await result(running)
        await wait_status(pool, lambda st: BUSY not in st.engines)
        assert pool.starts_at_once("S")

    run_pool(tmp_path, body, workers=2, throttle_worker_s_per_s=None)


def test_starts_at_once_is_false_for_a_session_the_throttle_holds(tmp_path):
    async def body(pool: ProcessPool) -> None:
        await result(await pool.submit("H", UtteranceJob(pcm(0, 600))))  # 0.6 worker-s against a 0.3 s burst
        await wait_status(pool, lambda st: BUSY not in st.engines)
        assert pool.status().sessions_throttled == 1
        assert not pool.starts_at_once("H") and pool.starts_at_once("B")

    run_pool(tmp_path, body, workers=2, throttle_worker_s_per_s=0.02, throttle_burst_s=0.3)


def test_a_session_within_its_allowance_is_never_delayed(tmp_path):
    """One utterance every 0.25 s, each holding the worker 50 ms: 0.2 worker-s per second, as
    real-time speech costs with base, under an allowance of 0.5 with a burst of only 0.1
    worker-s.  No utterance waits for the throttle, and none is throttled."""
    async def body(pool: ProcessPool) -> None:
        latencies = []
        for i in range(10):
            t0 = time.monotonic()
            await result(await pool.submit("caller", UtteranceJob(pcm(i, 50))))
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(max(0.0, 0.25 - latencies[-1]))
            assert pool.capacity().held == 0
        assert max(latencies) < 0.2, latencies  # 50 ms of work plus the pipe: never a throttle wait
        assert pool.status().sessions_throttled == 0

    run_pool(tmp_path, body, workers=1, throttle_worker_s_per_s=0.5, throttle_burst_s=0.1)


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_engine_exception_is_retried_then_fails_without_restart(tmp_path, max_attempts):
    async def body(pool: ProcessPool) -> None:
        pid = worker_processes()[0].pid
        fut = await pool.submit("A", UtteranceJob(pcm(RAISE)))
        with pytest.raises(AsrError, match="RuntimeError: fake engine failure"):
            await result(fut)
        assert call_pids(tmp_path, RAISE) == [pid] * max_attempts  # same worker every time
        assert pool.status() == BackendStatus((IDLE,), 0, 0, 0, 1)
        t = await result(await pool.submit("A", UtteranceJob(pcm(4))))
        assert t.text == text_for(4) and fakes.pid_of(t) == pid

    run_pool(tmp_path, body, workers=1, max_attempts=max_attempts)


# --------------------------------------------------------------------------- cancel / close


def test_cancel_session_cancels_its_queued_futures(tmp_path):
    async def body(pool: ProcessPool) -> None:
        in_flight = await pool.submit("A", UtteranceJob(pcm(0, 300)))
        queued_a = [await pool.submit("A", UtteranceJob(pcm(i))) for i in (1, 2, 3)]
        queued_b = await pool.submit("B", UtteranceJob(pcm(10)))
        await wait_status(pool, lambda st: st.engines == (BUSY,))
        assert pool.status().utterances_queued == 4
        pool.cancel_session("A")
        assert all(f.cancelled() for f in queued_a)
        assert pool.status().utterances_queued == 1
        assert (await result(in_flight)).text == text_for(0)  # already running: it finishes
        assert (await result(queued_b)).text == text_for(10)
        assert call_tags(tmp_path) == [0, 10]
        pool.cancel_session("A")  # nothing left: harmless
        pool.cancel_session("nobody")
        assert pool.status() == BackendStatus((IDLE,), 0, 0, 2, 0)

    run_pool(tmp_path, body, workers=1)


def test_close_is_idempotent_and_kills_workers(tmp_path):
    async def main() -> None:
        pool = ProcessPool(pool_options(tmp_path, workers=2))
        await asyncio.wait_for(pool.start(), WAIT_S)
        pids = [p.pid for p in worker_processes()]
        assert len(pids) == 2
        assert (await result(await pool.submit("s", UtteranceJob(pcm(1))))).text == text_for(1)
        t0 = time.monotonic()
        await pool.close()
        assert time.monotonic() - t0 < 2.0  # idle workers stop on request, no kill timeout
        assert_gone(pids)
        assert worker_processes() == []
        assert pool.status().engines == (STOPPED, STOPPED)
        await pool.close()
        assert pool.status().engines == (STOPPED, STOPPED)
        with pytest.raises(AsrError):
            await pool.submit("s", UtteranceJob(pcm(2)))

    asyncio.run(main())


def test_close_resolves_in_flight_queued_and_blocked_submissions(tmp_path):
    async def main() -> None:
        pool = ProcessPool(pool_options(tmp_path, workers=1, max_queued_per_session=1))
        await asyncio.wait_for(pool.start(), WAIT_S)
        pid = worker_processes()[0].pid
        in_flight = await pool.submit("A", UtteranceJob(pcm(0, 800)))
        await wait_status(pool, lambda st: st.engines == (BUSY,))
        queued = await pool.submit("A", UtteranceJob(pcm(1)))
        blocked = asyncio.create_task(pool.submit("A", UtteranceJob(pcm(2))))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        await asyncio.wait_for(pool.close(), WAIT_S)
        # Nobody is left waiting forever on a pool that is gone.
        assert queued.cancelled()
        assert in_flight.cancelled()
        with pytest.raises(AsrError, match="closed"):
            await asyncio.wait_for(blocked, 1)
        assert pool.status().utterances_queued == 0
        assert_gone([pid])

    asyncio.run(main())


# --------------------------------------------------------------------------- start failures


def _local_factory_not_picklable() -> Callable[[EngineOptions], fakes.FakeEngine]:
    def factory(options: EngineOptions) -> fakes.FakeEngine:
        return fakes.FakeEngine(options)

    return factory


@pytest.mark.parametrize(
    "factory, message",
    [
        (fakes.failing_factory, "RuntimeError: cannot load fake model"),
        (fakes.exiting_factory, "pipe closed"),
        (_local_factory_not_picklable(), "pickle"),  # spawn cannot send it to the worker
    ],
    ids=["raises", "exits", "unpicklable"],
)
def test_engine_init_failure_makes_start_raise_model_error(tmp_path, factory, message):
    async def main() -> None:
        pool = ProcessPool(pool_options(tmp_path, workers=2, engine_factory=factory))
        with pytest.raises(ModelError, match=message):
            await asyncio.wait_for(pool.start(), WAIT_S)
        assert pool.status().engines == (STOPPED, STOPPED)
        with pytest.raises(AsrError):
            await pool.submit("s", UtteranceJob(pcm(1)))

    asyncio.run(main())
    assert worker_processes() == []


def test_engine_init_timeout_makes_start_raise_model_error(tmp_path):
    async def main() -> None:
        # The engine would load after SLOW_INIT_S; only the start timeout can fail it.
        pool = ProcessPool(pool_options(tmp_path, engine_factory=fakes.slow_init_factory, start_timeout_s=0.3))
        with pytest.raises(ModelError):
            await asyncio.wait_for(pool.start(), WAIT_S)

    asyncio.run(main())
    assert worker_processes() == []


def test_close_during_start_makes_start_raise_model_error(tmp_path):
    async def main() -> None:
        pool = ProcessPool(pool_options(tmp_path, engine_factory=fakes.slow_init_factory))
        starting = asyncio.create_task(pool.start())
        await asyncio.sleep(0.2)
        assert pool.status().engines == (STARTING,)
        await asyncio.wait_for(pool.close(), WAIT_S)
        with pytest.raises(ModelError):
            await asyncio.wait_for(starting, 2)

    asyncio.run(main())
    assert worker_processes() == []


# --------------------------------------------------------------------------- sentiment


def test_sentiment_is_computed_in_the_worker_only_when_asked(tmp_path):
    async def body(pool: ProcessPool) -> None:
        worker_pid = worker_processes()[0].pid
        asked = await asyncio.wait_for(await pool.submit("s", UtteranceJob(pcm(3), analyses=frozenset({"sentiment"}))), WAIT_S)
        plain = await asyncio.wait_for(await pool.submit("s", UtteranceJob(pcm(4))), WAIT_S)
        assert asked.transcript.text == text_for(3) and plain.transcript.text == text_for(4)
        # The fake sentiment engine labels by its worker's pid: it ran in the worker, not here.
        assert asked.annotations.get("sentiment") == Sentiment("neutral", fakes.sentiment_score(worker_pid))
        assert asked.analysis_s > 0
        assert plain.annotations == {} and plain.analysis_s == 0
        failed = await asyncio.wait_for(await pool.submit("s", UtteranceJob(pcm(fakes.SENTIMENT_RAISE), analyses=frozenset({"sentiment"}))), WAIT_S)
        assert failed.transcript.text == text_for(fakes.SENTIMENT_RAISE) and "sentiment" not in failed.annotations  # transcript kept

    run_pool(tmp_path, body, workers=1, analyzers=(sentiment_analyzer_spec(SentimentOptions(engine="fake"), fakes.make_sentiment_engine),))


def test_no_sentiment_engine_answers_none(tmp_path):
    async def body(pool: ProcessPool) -> None:
        got = await asyncio.wait_for(await pool.submit("s", UtteranceJob(pcm(5), analyses=frozenset({"sentiment"}))), WAIT_S)
        assert got.transcript.text == text_for(5) and "sentiment" not in got.annotations

    run_pool(tmp_path, body, workers=1)


def test_sentiment_engine_init_failure_makes_start_raise_model_error(tmp_path):
    async def main() -> None:
        pool = ProcessPool(pool_options(tmp_path, analyzers=(sentiment_analyzer_spec(SentimentOptions(engine="fake"), fakes.failing_sentiment_factory),)))
        with pytest.raises(ModelError, match="cannot load fake sentiment model"):
            await asyncio.wait_for(pool.start(), WAIT_S)

    asyncio.run(main())
    assert worker_processes() == []


def test_a_looping_decode_cannot_hold_a_worker_past_its_budget(tmp_path):
    """Every attempt of this utterance loops and takes 0.8 s; unbounded, Whisper's six
    temperatures would hold the worker 4.8 s.  The budget (2 s + 1 s per audio s) stops the
    fallbacks after two attempts, the repeated tail is cut, and %C's counters say so."""
    async def body(pool: ProcessPool) -> None:
        budget_s = pool.options.engine.limits.budget_s(160 / 16000)
        t0 = time.monotonic()
        got = await asyncio.wait_for(await pool.submit("s", UtteranceJob(pcm(fakes.LOOP, 800))), WAIT_S)
        held_s = time.monotonic() - t0
        t = got.transcript
        assert t.text == "uh" and t.attempts == 2 and t.timed_out and t.loop_cut
        assert t.decode_s <= budget_s
        assert held_s < budget_s + 1.0  # + pipe and scheduling overhead
        g = pool.status().guards
        assert (g.loops, g.loop_cuts, g.time_limited) == (1, 1, 1)
        normal = await asyncio.wait_for(await pool.submit("s", UtteranceJob(pcm(7))), WAIT_S)  # the worker serves the next one
        assert normal.transcript.text == text_for(7) and pool.status().guards.loops == 1

    run_pool(tmp_path, body, workers=1)


def test_a_failing_analyzer_leaves_the_transcript_and_the_other_annotations() -> None:
    from whisper_streaming.backends.worker import run_analyses

    class Good:
        name = "good"

        def analyze(self, audio, transcript):
            return f"ok {transcript.text}"

    class Bad:
        name = "bad"

        def analyze(self, audio, transcript):
            raise RuntimeError("boom")

    t = Transcript("hi", "en", 1.0, (), 0.1)
    annotations, seconds = run_analyses({"bad": Bad(), "good": Good()}, frozenset({"bad", "good"}), None, t)
    assert annotations == {"good": "ok hi"} and seconds >= 0
    assert run_analyses({"good": Good()}, frozenset(), None, t) == ({}, 0.0)  # not asked: not run


# --------------------------------------------------------------------------- configuration


def test_throttle_and_retry_settings_come_from_the_config(tmp_path):
    from whisper_streaming.app.wiring import pool_options_from_config
    from whisper_streaming.config.loader import parse_config

    engine = EngineOptions(engine="fake", model=str(tmp_path))
    default = pool_options_from_config(parse_config({}), engine)
    assert (default.throttle_worker_s_per_s, default.throttle_burst_s) == (1.0, 20.0)
    assert default.retry_timeout_fraction == 0.25
    custom = pool_options_from_config(parse_config({"server": {"throttle_worker_s_per_s": 1.5, "throttle_burst_s": 5}}), engine)
    assert (custom.throttle_worker_s_per_s, custom.throttle_burst_s) == (1.5, 5.0)
    for off in (0, None):
        options = pool_options_from_config(parse_config({"server": {"throttle_worker_s_per_s": off}}), engine)
        assert options.throttle_worker_s_per_s is None
    for bad in ({"throttle_worker_s_per_s": -1}, {"throttle_burst_s": 0}):
        with pytest.raises(ConfigError):
            parse_config({"server": bad})
