"""Counters since start, shown in ``%C`` (mutable, owned by the runtime's event loop)."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from whisper_streaming.analyzers.sentiment_stats import SentimentTally

__all__ = ["RuntimeStats", "LatencyHistogram", "FINAL_LATENCY_BUCKETS_S"]

FINAL_LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the final latency histogram's buckets (``+Inf`` follows)."""


@dataclass
class LatencyHistogram:
    """Cumulative-ready histogram of latencies in seconds (the Prometheus ``le`` buckets are
    built from it at scrape time): ``counts[i]`` observations in ``(bounds_s[i-1], bounds_s[i]]``,
    the last entry those above every bound; ``sum_s`` their sum."""

    bounds_s: tuple[float, ...] = FINAL_LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(FINAL_LATENCY_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def observe(self, value_s: float) -> None:
        self.counts[bisect.bisect_left(self.bounds_s, value_s)] += 1
        self.sum_s += value_s

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class RuntimeStats:
    """``errors``: per reason, the sessions that ended with it, and the connections a door refused
    with it and told so (``%E``; an AudioSocket refusal has no way back and is counted only in
    ``sessions_rejected``); ``speculations_started``/``_used``: tentative utterances submitted
    before their endpoint, and those whose result became a final result; ``partials_decoded``/
    ``_sent``/``_refused``: partial decodes run, partial hypotheses delivered, and partials not
    decoded for want of an idle worker (dropped under load); ``sentiment``: the results
    delivered with a sentiment.  ``finals``: final results delivered (every door, also to
    sessions whose peer left: the sinks get them); ``final_latency``: seconds from an
    utterance's endpoint (the audio that ended it arrived, or the stream was finished) to its
    final result's delivery; ``audio_in_s``: seconds of stream audio received (each stream at
    its own rate)."""

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
    finals: int = 0
    final_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    audio_in_s: float = 0.0
