"""The worker process answers a withdrawn job with JobStopped (the shared stop value), in a real ``spawn``-ed process."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

import fakes
from fakes import STAGED, pcm, text_for
from whisper_streaming.backends.worker import JobDone, JobStopped, WorkerJob, WorkerReady, worker_main
from whisper_streaming.engines.base import EngineOptions

pytestmark = pytest.mark.timeout(60)


def _recv(conn: multiprocessing.connection.Connection) -> object:
    assert conn.poll(30), "no answer from the worker"
    return conn.recv()


def test_a_job_withdrawn_before_the_worker_reads_it_never_reaches_the_engine(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Value("q", -1, lock=False)
    proc = ctx.Process(target=worker_main, args=(child, fakes.make_engine, EngineOptions(engine="fake", model=str(tmp_path)), (), stop), daemon=True)
    proc.start()
    child.close()
    try:
        assert isinstance(_recv(parent), WorkerReady)
        stop.value = 7  # withdrawn while it was on its way
        parent.send(WorkerJob(7, pcm(STAGED, 10), None, frozenset()))
        assert _recv(parent) == JobStopped(7)
        parent.send(WorkerJob(8, pcm(3), None, frozenset()))  # the next job runs as usual
        reply = _recv(parent)
        assert isinstance(reply, JobDone) and reply.job_id == 8 and reply.result.transcript.text == text_for(3)
        assert [tag for _, tag in fakes.calls(tmp_path)] == [3]  # the withdrawn job never reached the engine
    finally:
        parent.send(None)
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def test_an_utterance_the_speech_screen_rejected_gets_no_analyses(tmp_path: Path) -> None:
    from fakes import SCREENED, make_probe_analyzer
    from whisper_streaming.analyzers.base import AnalyzerSpec

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    specs = (AnalyzerSpec("probe", make_probe_analyzer, str(tmp_path)),)
    proc = ctx.Process(target=worker_main, args=(child, fakes.make_engine, EngineOptions(engine="fake", model=str(tmp_path)), specs, None), daemon=True)
    proc.start()
    child.close()
    try:
        assert isinstance(_recv(parent), WorkerReady)
        parent.send(WorkerJob(1, pcm(SCREENED), None, frozenset({"probe"})))
        reply = _recv(parent)
        assert isinstance(reply, JobDone) and reply.result.transcript.no_speech_screened
        assert reply.result.annotations == {} and reply.result.analysis_s == 0.0
        assert not (tmp_path / "probe.log").exists()  # the analyzer never ran
        parent.send(WorkerJob(2, pcm(3), None, frozenset({"probe"})))  # speech: analysed as before
        reply = _recv(parent)
        assert isinstance(reply, JobDone) and reply.result.annotations == {"probe": "probed"}
        assert (tmp_path / "probe.log").read_text() == text_for(3) + "\n"
    finally:
        parent.send(None)
        proc.join(10)
        if proc.is_alive():
            proc.kill()
