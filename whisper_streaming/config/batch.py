"""The ``batch`` section: the file API of the HTTP server (``/v1/audio/transcriptions``, ``/v1/jobs``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG

__all__ = ["BatchConfig"]


class BatchConfig(BaseModel):
    """Batch analysis of uploaded files, on the workers the streams leave free (needs ``http.enabled``)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = True
    """Serve ``POST /v1/audio/transcriptions`` (OpenAI-compatible) and the jobs API ``/v1/jobs``."""

    max_upload_bytes: Annotated[StrictInt, Field(ge=1024)] = 200 * 1024 * 1024
    """Largest request body of an upload; a larger one is refused with 413 before it is read."""

    max_duration_s: Annotated[StrictFloat | StrictInt, Field(gt=0)] = 4 * 3600
    """Longest audio accepted (seconds, after decoding); longer: 413.  Decoded audio is kept in
    memory while its job waits or runs (64 kB per second: 4 h is 0.9 GB)."""

    max_queued_jobs: Annotated[StrictInt, Field(ge=1, le=1000)] = 8
    """Jobs (and synchronous transcriptions) waiting or running at once; beyond: 429."""

    max_running_jobs: Annotated[StrictInt, Field(ge=1, le=64)] = 1
    """Jobs that run at once (one file already uses every worker the streams leave free)."""

    retention_s: Annotated[StrictFloat | StrictInt, Field(gt=0)] = 3600
    """How long a finished job's result stays readable at ``GET /v1/jobs/{id}``."""

    callbacks: StrictBool = True
    """Accept a job's ``callback_url`` (the server then POSTs to a URL a client chose: turn it off
    where the server can reach hosts its clients must not)."""

    callback_targets: Literal["public", "private", "any"] = "private"
    """Where a ``callback_url`` may point (checked when the job is submitted, on every address its
    host resolves to): ``public`` only global addresses; ``private`` those and private networks
    (RFC 1918, RFC 4193: the usual internal services); ``any`` no check.  Loopback, link-local
    (169.254.0.0/16, where clouds serve instance credentials), unspecified, multicast and
    reserved addresses are refused unless ``any``: a client must not make the server POST to its
    own ports or its cloud's metadata service (server-side request forgery)."""

    max_speakers: Annotated[StrictInt, Field(ge=1, le=16)] = 8
    """The most speakers diarization looks for when a request does not give ``num_speakers``."""
