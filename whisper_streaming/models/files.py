"""Crash-safe file writing for model caches (shared by model assembly and the converter)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_SUFFIX", "atomic_writer"]

TMP_SUFFIX = ".tmp"
"""Suffix of a temporary file being written (removed on failure; stale ones are ignored)."""


@contextlib.contextmanager
def atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """Yield a binary file in ``dest``'s directory; on success fsync it and rename onto ``dest``.

    On any exception the temporary file is removed and ``dest`` is left untouched.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=TMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
