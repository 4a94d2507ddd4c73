"""Optional results log (``results.jsonl_path``): one JSON line per final result, for analytics.

Each line is a JSON object::

    {"time": "2026-11-22T00:31:02.512Z", "session_id": "c7", "user_id": "alice", "stream_index": 0,
     "start_s": 1.2, "end_s": 3.4, "text": "...", "language": "en",
     "sentiment": "negative", "score": 0.912}

``sentiment`` and ``score`` are null for a stream without sentiment; ``score`` is null for
``"unsupported"``.  ``session_id`` is the server's connection id (``c<n>``, unique while the
server runs).

Concurrency: the file is opened with ``O_APPEND`` and each line goes out in a single
``write(2)`` of the whole encoded line, so lines never interleave, even between several server
processes appending to the same file on a local filesystem.  Within one server the event loop
is the only writer.  A write failure (disk full) is logged and counted, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from whisper_streaming.core.results import FinalResult
from whisper_streaming.sinks.base import ResultPublished, SinkEvent, result_json

__all__ = ["ResultsLog", "JsonlSink", "result_record"]

log = logging.getLogger(__name__)


def result_record(*, session_id: str, user_id: str | None, result: FinalResult) -> dict[str, Any]:
    """The JSON object for one result (see the module docstring)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return {"time": stamp, "session_id": session_id, "user_id": user_id, "stream_index": result.stream_index} | result_json(result)


class ResultsLog:
    """An append-only JSON-lines file. :meth:`write` one record per result; :meth:`close` at exit.

    Raises:
        OSError: from construction, when the file cannot be opened for appending.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.lines_written = 0
        self.write_errors = 0

    def write(self, record: dict[str, Any]) -> bool:
        """Append one line; False (logged) if it could not be written."""
        if self._fd is None:
            return False
        text = json.dumps(record, ensure_ascii=False, separators=(", ", ": "))
        # U+2028/U+2029 are valid raw in JSON, but line readers that follow Unicode (Python's
        # str.splitlines, JavaScript) break the line there: always escape them.
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        data = (text + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, data)
            if written != len(data):  # a regular file only writes short when the disk is full
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self.write_errors += 1
            log.error("results log %s: %s", self.path, exc)
            return False
        self.lines_written += 1
        return True

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JsonlSink:
    """The results log as a :class:`~whisper_streaming.sinks.base.Sink`: one line per
    :class:`~whisper_streaming.sinks.base.ResultPublished`, from every door."""

    def __init__(self, log_file: ResultsLog) -> None:
        self.log_file = log_file

    def publish(self, event: SinkEvent) -> None:
        if isinstance(event, ResultPublished):
            self.log_file.write(result_record(session_id=event.session.session_id, user_id=event.session.user_id, result=event.result))

    async def aclose(self, deadline_s: float) -> None:
        self.log_file.close()
