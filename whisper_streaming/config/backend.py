"""The ``backend`` section: who runs Whisper for this server: its own worker processes (``local``)
or worker hosts on other machines through Redis (``redis``; ``whisper-streaming-worker`` runs
them with the same file, see ``docs/deployment.md``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat, NonEmptyStr

__all__ = ["BackendConfig"]


class BackendConfig(BaseModel):
    """``kind: local`` (default): ``model.channel`` worker processes of this server.  ``kind: redis``:
    utterances go through Redis Streams to worker hosts, each with ``model.channel`` engine
    processes (:mod:`whisper_streaming.backends.redis_backend`); fairness, backpressure and
    the session limits stay in the front end.  The timing keys apply to both sides, so front
    ends and worker hosts should share them."""

    model_config = STRICT_MODEL_CONFIG

    kind: Literal["local", "redis"] = "local"
    """``local``: worker processes of this server; ``redis``: worker hosts through ``redis_url``."""

    redis_url: NonEmptyStr = "redis://127.0.0.1:6379/0"
    """``redis://[[user]:password@]host:port/db``; ``rediss://`` for TLS (the system's CA store,
    or ``?ssl_ca_certs=/path/ca.pem``; redis-py's URL options).  The environment variable
    ``WHISPER_STREAMING_REDIS_URL`` and the ``--redis-url`` option override it (to keep a
    password out of the file)."""

    prefix: Annotated[NonEmptyStr, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = "whisper_streaming"
    """Prefix of every key (several deployments can share one Redis with different prefixes)."""

    group: Annotated[NonEmptyStr, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = "asr-workers"
    """The worker hosts' consumer group."""

    heartbeat_s: Annotated[FiniteFloat, Field(gt=0.0, le=60.0)] = 1.0
    """How often a worker host refreshes its record and its jobs' idle time; how often a front end
    reads the live hosts and retries a lost Redis."""

    worker_ttl_s: Annotated[FiniteFloat, Field(gt=0.0, le=600.0)] = 3.0
    """A worker host not heard from for this long no longer counts as live (its slots are not used)."""

    claim_after_s: Annotated[FiniteFloat, Field(gt=0.0, le=600.0)] = 3.0
    """A job whose host sent no heartbeat for this long is taken over by another host
    (redelivery within about ``claim_after_s + heartbeat_s`` of a host's death)."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = 2
    """Deliveries of one utterance to worker hosts; one that every host dies on fails after this
    many (``%E ASR_FAILED``) instead of going round.  (A crash of one engine process inside a
    live host is retried there once more, as on a single server.)"""

    max_in_flight: Annotated[int, Field(ge=0, le=100_000)] = 0
    """Utterances this front end hands to Redis at once (0: as many as the live hosts have
    engines, so a burst waits in the front end's fair queue, not in the shared stream)."""

    result_timeout_s: Annotated[FiniteFloat, Field(gt=0.0, le=3600.0)] = 180.0
    """An utterance handed to Redis with no answer after this long fails (``%E ASR_FAILED``)."""

    unavailable_grace_s: Annotated[FiniteFloat, Field(ge=0.0, le=3600.0)] = 5.0
    """While Redis is unreachable or no host is live, new sessions are refused at once
    (``SERVER_TOO_BUSY``); open sessions wait this long for it to return (a restart within it
    loses nothing), then end with ``%E BACKEND_UNAVAILABLE``."""

    result_ttl_s: Annotated[FiniteFloat, Field(ge=10.0, le=86400.0)] = 600.0
    """A front end's result stream expires this long after its last answer (a front end that
    died leaves nothing behind); also how long a worker host keeps retrying an answer while Redis
    is down."""

    connect_timeout_s: Annotated[FiniteFloat, Field(gt=0.0, le=60.0)] = 2.0
    """Per connection attempt and per Redis command."""

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _timings(self) -> BackendConfig:
        if not (self.heartbeat_s < self.claim_after_s and self.heartbeat_s < self.worker_ttl_s):
            raise ValueError("heartbeat_s must be below claim_after_s and worker_ttl_s (a live host must never look dead)")
        return self
