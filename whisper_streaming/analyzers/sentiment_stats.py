"""Per-stream sentiment statistics: the ``%S`` summary (pure).

:class:`SentimentTally` accumulates the sentiments of a stream's results;
:meth:`SentimentTally.summary` gives a frozen :class:`SentimentSummary`, whose text is the
``%S`` packet::

    results: 6
    positive: 3 (50.0%)
    negative: 1 (16.7%)
    neutral: 2 (33.3%)
    unsupported: 0
    mean score: 0.712

``results`` counts every result with a sentiment field; the percentages and the mean score
are over the *scored* results (positive + negative + neutral), so results in an unsupported
language do not dilute them.  With no scored result the percentages are 0.0% and the mean
score is ``n/a``.  This is the original analyzer's per-session report ("positive: N times
x% / negative: M times y%") with neutral, unsupported and the mean score added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from whisper_streaming.errors import UsageError
from whisper_streaming.analyzers.sentiment import LABELS, UNSUPPORTED, Sentiment

__all__ = ["SentimentTally", "SentimentSummary"]

_LINE = re.compile(r"(?P<key>[a-z ]+): (?P<count>\d+|[0-9.]+|n/a)(?: \((?P<pct>[0-9.]+)%\))?\Z")


@dataclass(frozen=True)
class SentimentSummary:
    """Counts per label (and ``unsupported``) and the mean score of one stream."""

    positive: int = 0
    negative: int = 0
    neutral: int = 0
    unsupported: int = 0
    mean_score: float | None = None

    @property
    def results(self) -> int:
        return self.scored + self.unsupported

    @property
    def scored(self) -> int:
        return self.positive + self.negative + self.neutral

    def count(self, label: str) -> int:
        if label not in (*LABELS, UNSUPPORTED):
            raise UsageError(f"unknown sentiment label {label!r}")
        return int(getattr(self, label))

    def percent(self, label: str) -> float:
        """Share of the scored results with ``label``, in percent (0.0 when none was scored)."""
        if label not in LABELS:
            raise UsageError(f"percentages are per label, not {label!r}")
        return 100.0 * self.count(label) / self.scored if self.scored else 0.0

    def to_text(self) -> str:
        """The ``%S`` text (see the module docstring)."""
        lines = [f"results: {self.results}"]
        lines += [f"{label}: {self.count(label)} ({self.percent(label):.1f}%)" for label in LABELS]
        lines.append(f"{UNSUPPORTED}: {self.unsupported}")
        lines.append(f"mean score: {'n/a' if self.mean_score is None else f'{self.mean_score:.3f}'}")
        return "\n".join(lines)

    def counts_text(self) -> str:
        """``positive=3 negative=1 neutral=2 unsupported=0`` (the ``%C`` line)."""
        return " ".join(f"{label}={self.count(label)}" for label in (*LABELS, UNSUPPORTED))

    @classmethod
    def from_text(cls, text: str) -> SentimentSummary:
        """Parse a ``%S`` text (the mean score keeps its 3 decimals).

        Raises:
            UsageError: not a summary text.
        """
        values: dict[str, str] = {}
        for line in text.splitlines():
            m = _LINE.match(line.strip())
            if m is None:
                raise UsageError(f"not a summary line: {line!r}")
            values[m.group("key")] = m.group("count")
        try:
            counts = {label: int(values[label]) for label in (*LABELS, UNSUPPORTED)}
            mean = values["mean score"]
            summary = cls(**counts, mean_score=None if mean == "n/a" else float(mean))
            if "results" in values and int(values["results"]) != summary.results:
                raise UsageError("summary counts do not add up to its results")
        except (KeyError, ValueError) as exc:
            raise UsageError(f"incomplete summary: {exc}") from None
        return summary


@dataclass
class SentimentTally:
    """Mutable accumulator: :meth:`add` each result's sentiment, then :meth:`summary`."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*LABELS, UNSUPPORTED), 0))
    score_sum: float = 0.0

    def add(self, sentiment: Sentiment) -> None:
        self.counts[sentiment.label] += 1
        if sentiment.score is not None:
            self.score_sum += sentiment.score

    def summary(self) -> SentimentSummary:
        scored = sum(self.counts[label] for label in LABELS)
        return SentimentSummary(**self.counts, mean_score=self.score_sum / scored if scored else None)
