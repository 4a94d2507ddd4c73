"""The ``partials`` section: partial hypotheses (``%P``) for streams that ask for them (``%o partials=1``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat

__all__ = ["PartialsConfig"]


class PartialsConfig(BaseModel):
    """When partial hypotheses are decoded (``PartialPolicy``) and where: as a greedy decode, on
    their own worker processes (``workers``), or with ``workers: 0`` only on idle workers of the
    finals, and then never with a single one (``model.channel: 1`` answers ``partials=0``)."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = True
    """Whether a stream may ask for partials (``false``: ``%o partials=1`` is answered ``partials=0``)."""

    first_after_s: Annotated[FiniteFloat, Field(ge=0.0, le=60.0)] = 1.0
    """The first partial of an utterance once it has this much audio since its speech start (s)."""

    min_interval_s: Annotated[FiniteFloat, Field(gt=0.0, le=60.0)] = 1.0
    """At least this much more audio (s) between two partials of an utterance."""

    workers: Annotated[int, Field(ge=0, le=64)] = 1
    """Worker processes for partials only, started with the server (not waited for); paused
    while the finals need the CPU (``backends/pool.py``).  0: partials run on idle workers of the
    finals instead (one more model in memory saved; finals may then wait for a partial)."""

    cost_factor: Annotated[FiniteFloat, Field(ge=0.0, le=100.0)] = 2.0
    """After a partial that took ``d`` seconds to decode, the next one waits ``max(min_interval_s,
    cost_factor * d)`` more seconds of audio (a slow or loaded machine offers fewer)."""
