"""What front ends and worker hosts exchange through Redis: key names, options, typed messages, codec.

The broker layout (Redis Streams, https://redis.io/docs/latest/develop/data-types/streams/):

* ``{prefix}:jobs`` and ``{prefix}:jobs:low``: the job streams.  A front end ``XADD``\\ s one entry
  per utterance (``:low`` for partial hypotheses and chunks of files, which workers take only
  when the first is empty); worker hosts read them in one consumer group (``XREADGROUP``), so
  each entry goes to one host, stays in the group's pending entries list (PEL) until that host
  ``XACK``\\ s it, and is then deleted (``XDEL``: the streams hold only unfinished work).
* ``{prefix}:results:{frontend_id}``: each front end's own result stream; a host ``XADD``\\ s the
  answer there (trimmed, and expiring when its front end is gone) and the front end reads it
  with a blocking ``XREAD``.
* ``{prefix}:workers`` (a set) and ``{prefix}:worker:{worker_id}`` (a string with a TTL): the live
  worker hosts and their slots, refreshed on every heartbeat.

Recovery uses Redis's own primitives: a host resets the idle time of the entries it is working
on every heartbeat (``XCLAIM ... JUSTID`` to itself, which does not count a delivery); an entry
idle for ``claim_after_s`` belongs to a host that stopped, and any live host takes it over with
``XAUTOCLAIM`` (which counts a delivery); one delivered more than ``max_attempts`` times is
answered as failed instead of being decoded again.

Entries carry one ``body`` field: a pickle of a frozen dataclass of this package, read back with
:func:`loads`, an unpickler that only builds this package's dataclasses and enums, numpy arrays
and plain values ("Restricting Globals", Python's :mod:`pickle` documentation): anyone who can
write to the job stream could otherwise run code on every worker host.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import pickle
from dataclasses import dataclass
from typing import Any

from whisper_streaming.backends.base import UtteranceJob, UtteranceResult
from whisper_streaming.errors import AsrError

__all__ = [
    "RedisOptions",
    "RedisKeys",
    "WireJob",
    "WireResult",
    "WorkerRecord",
    "MessageError",
    "dumps",
    "loads",
]


@dataclass(frozen=True)
class RedisOptions:
    """Where the broker is and how recovery is timed (config section ``backend``).

    ``url``: ``redis://[[user]:password@]host:port/db`` or ``rediss://`` for TLS (redis-py's
    ``from_url``); ``prefix``: of every key; ``group``: the worker hosts' consumer group.
    ``heartbeat_s``: how often a host refreshes its record and the idle time of its jobs;
    ``worker_ttl_s``: a host not heard from for this long is not counted live;
    ``claim_after_s``: a job idle (no heartbeat) this long is taken over by another host;
    ``max_attempts``: deliveries of one job before it is answered as failed (a job that kills
    every host it reaches must not go round forever).
    ``result_ttl_s``: a result stream nobody reads (its front end gone) expires after this;
    ``connect_timeout_s``: per connection attempt and per command (blocking reads excepted).
    """

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "whisper_streaming"
    group: str = "asr-workers"
    heartbeat_s: float = 1.0
    worker_ttl_s: float = 3.0
    claim_after_s: float = 3.0
    max_attempts: int = 2
    result_ttl_s: float = 600.0
    connect_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not (0 < self.heartbeat_s < self.claim_after_s and self.heartbeat_s < self.worker_ttl_s):
            raise ValueError("heartbeat_s must be positive and below claim_after_s and worker_ttl_s")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


@dataclass(frozen=True)
class RedisKeys:
    """The key names under ``prefix`` (see the module docstring)."""

    prefix: str

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def jobs_low(self) -> str:
        return f"{self.prefix}:jobs:low"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def results(self, frontend_id: str) -> str:
        return f"{self.prefix}:results:{frontend_id}"

    def job_stream(self, job: UtteranceJob) -> str:
        """Partials and chunks of files go to the low-priority stream."""
        return self.jobs_low if job.partial or job.batch is not None else self.jobs


@dataclass(frozen=True)
class WireJob:
    """One utterance on a job stream: ``job_id`` (``{frontend_id}:{n}``, unique), the result
    stream to answer on, the session it belongs to (the host's fair queue key) and the job."""

    job_id: str
    reply_to: str
    session: str
    job: UtteranceJob


@dataclass(frozen=True)
class WireResult:
    """The answer to one :class:`WireJob`: its result, or ``error`` (the reason it failed for good).

    ``worker_id``: the host that answered; ``deliveries``: how many times the job was delivered
    (1 unless another host took it over); ``worker_s``: seconds the host's engine held it
    (the front end's cost throttle charges this)."""

    job_id: str
    worker_id: str
    result: UtteranceResult | None = None
    error: str | None = None
    deliveries: int = 1
    worker_s: float = 0.0


@dataclass(frozen=True)
class WorkerRecord:
    """A worker host as its heartbeat describes it: ``slots`` engines, ``busy`` of them with a job,
    ``redelivered``: jobs it took over from hosts that stopped; ``draining``: it is stopping and
    takes no new job; ``engine_restarts``: its engine processes restarted (crash or hang)."""

    worker_id: str
    host: str
    pid: int
    slots: int
    busy: int
    redelivered: int = 0
    draining: bool = False
    engine_restarts: int = 0


class MessageError(AsrError):
    """A broker entry that is not a message of ours (corrupt, another version, or refused by
    :func:`loads`)."""


_NUMPY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
})
_BUILTINS = frozenset({"frozenset", "set", "complex", "bytearray"})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module == "whisper_streaming" or module.startswith("whisper_streaming."):
            found = super().find_class(module, name)
            if isinstance(found, type) and (dataclasses.is_dataclass(found) or issubclass(found, enum.Enum)):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a broker message")


def dumps(message: Any) -> bytes:
    """Pickle ``message`` (a :class:`WireJob`, :class:`WireResult` or :class:`WorkerRecord`) for the broker."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes, expected: type) -> Any:
    """Read back what :func:`dumps` wrote, building only this package's dataclasses and enums,
    numpy arrays and builtin values.

    Raises:
        MessageError: ``data`` is not a pickle, names anything else, or is not an ``expected``.
    """
    try:
        message = _Unpickler(io.BytesIO(data)).load()
    except Exception as exc:  # noqa: BLE001 - any failure to read is the sender's
        raise MessageError(f"unreadable broker message: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, expected):
        raise MessageError(f"broker message is a {type(message).__name__}, not a {expected.__name__}")
    return message
