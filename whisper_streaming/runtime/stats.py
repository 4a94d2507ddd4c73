"""Counters since start, shown in ``%C`` (mutable, owned by the runtime's event loop)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from whisper_streaming.analyzers.sentiment_stats import SentimentTally

__all__ = ["RuntimeStats"]


@dataclass
class RuntimeStats:
    """``errors``: per reason, the sessions that ended with it, and the connections a door refused
    with it and told so (``%E``; an AudioSocket refusal has no way back and is counted only in
    ``sessions_rejected``); ``speculations_started``/``_used``: tentative utterances submitted
    before their endpoint, and those whose result became a final result; ``partials_decoded``/
    ``_sent``/``_refused``: partial decodes run, partial hypotheses delivered, and partials not
    decoded for want of an idle worker (dropped under load); ``sentiment``: the results
    delivered with a sentiment."""

    sessions_started: int = 0
    sessions_rejected: int = 0
    handshake_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    speculations_started: int = 0
    speculations_used: int = 0
    partials_decoded: int = 0
    partials_sent: int = 0
    partials_refused: int = 0
    sentiment: SentimentTally = field(default_factory=SentimentTally)
