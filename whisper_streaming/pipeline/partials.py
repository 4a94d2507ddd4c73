"""Partial hypotheses: when to offer one, and which prefix of it is stable (pure; no clock, no model).

* :class:`PartialPolicy` -- the cadence, in seconds of the stream's audio: the first partial of
  an utterance once it has ``first_after_s`` of audio since its speech start, then each time
  ``max(min_interval_s, cost_factor * decode_s)`` more audio has arrived (``decode_s``: how long
  the last partial decode took, so a loaded or slow machine offers fewer), and a refused offer
  (no idle worker) is offered again after ``retry_after_s`` more audio.
* :class:`StablePrefix` -- LocalAgreement-2 (Macháček, Dabre and Bojar 2023, "Turning Whisper
  into Real-Time Transcription System", arXiv 2307.14743, as in ufal/whisper_streaming's
  ``HypothesisBuffer``): the prefix that two consecutive hypotheses agree on is committed, and
  the committed prefix only grows.  Words are compared normalized (case and punctuation
  ignored); text in a script written without spaces (Chinese, Japanese) is compared character
  by character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from whisper_streaming.errors import UsageError

__all__ = ["PartialPolicy", "StablePrefix", "split_units"]

_SPACELESS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
"""Hiragana, Katakana and CJK ideographs: scripts written without spaces between words."""


@dataclass(frozen=True)
class PartialPolicy:
    """When to offer a partial decode of the utterance in progress (seconds of stream audio).

    Raises:
        UsageError: a negative or non-finite value, or ``min_interval_s`` not positive.
    """

    first_after_s: float = 1.0
    min_interval_s: float = 1.0
    cost_factor: float = 2.0
    retry_after_s: float = 0.3

    def __post_init__(self) -> None:
        values = (self.first_after_s, self.min_interval_s, self.cost_factor, self.retry_after_s)
        if any(not isinstance(v, (int, float)) or not (0 <= v < float("inf")) for v in values) or self.min_interval_s <= 0:
            raise UsageError(f"invalid PartialPolicy {self!r}")

    def next_after_s(self, decode_s: float) -> float:
        """Audio (s) to wait after a partial that took ``decode_s`` seconds to decode."""
        return max(self.min_interval_s, self.cost_factor * max(decode_s, 0.0))


def split_units(text: str) -> tuple[list[str], str]:
    """``text`` as display units and the joiner: words and ``" "``, or characters and ``""``
    for text in a script written without spaces."""
    if _SPACELESS.search(text):
        return [ch for ch in text if not ch.isspace()], ""
    return text.split(), " "


def _norm(unit: str) -> str:
    return re.sub(r"[^\w]+", "", unit.casefold())


class StablePrefix:
    """LocalAgreement-2 over the consecutive hypotheses of one utterance (see the module docstring).

    :meth:`update` takes the newest hypothesis and returns ``(stable, unstable)``: ``stable`` the
    committed units (it never shrinks and each result starts with the previous one), ``unstable``
    the newest hypothesis after as many units as are committed.
    """

    def __init__(self) -> None:
        self._committed: list[str] = []
        self._previous: list[str] = []  # normalized units of the previous hypothesis
        self._joiner = " "

    @property
    def stable(self) -> str:
        return self._joiner.join(self._committed)

    def update(self, hypothesis: str) -> tuple[str, str]:
        units, joiner = split_units(hypothesis)
        if not self._committed:
            self._joiner = joiner
        norms = [_norm(u) for u in units]
        agree = 0
        for a, b in zip(self._previous, norms):
            if a != b:
                break
            agree += 1
        if agree > len(self._committed):
            self._committed += units[len(self._committed) : agree]
        self._previous = norms
        return self.stable, self._joiner.join(units[len(self._committed) :])
