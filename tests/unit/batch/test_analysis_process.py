"""The analysis process: a cancelled or overlong analysis is stopped (its process killed), and the
next request gets a new process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

import fakes
from whisper_streaming.batch import analysis
from whisper_streaming.batch.analysis import AnalysisProcess, AnalysisTask
from whisper_streaming.errors import AsrError

pytestmark = pytest.mark.timeout(60)


def task() -> AnalysisTask:
    return AnalysisTask(np.zeros(16000, dtype=np.float32), 16000, ((0.0, 1.0),), ((0.0, 1.0),), diarize=True)


async def pid_of_analysis(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return int(path.read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_cancelled_analysis_kills_its_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ANALYSIS_PID_FILE", str(tmp_path / "pid"))

    async def main() -> None:
        proc = AnalysisProcess(fn=fakes.slow_analysis)
        run = asyncio.ensure_future(proc.run(task()))
        pid = await pid_of_analysis(tmp_path / "pid")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        deadline = time.monotonic() + 10
        while not gone(pid):
            assert time.monotonic() < deadline, "the analysis process still runs"
            await asyncio.sleep(0.05)
        proc.close()

    asyncio.run(main())


def test_an_overlong_analysis_fails_with_asr_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ANALYSIS_PID_FILE", str(tmp_path / "pid"))
    monkeypatch.setattr(analysis, "ANALYSIS_TIMEOUT_BASE_S", 1.0)

    async def main() -> None:
        proc = AnalysisProcess(fn=fakes.slow_analysis)
        with pytest.raises(AsrError, match="longer than"):
            await proc.run(task())
        proc.close()

    asyncio.run(main())
