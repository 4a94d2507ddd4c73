"""A token bucket (pure; the clock is injected): how often a peer may do something cheap but unbounded.

``rate_per_s`` tokens are added per second up to ``burst``; :meth:`TokenBucket.take` spends one
and says whether there was one.  The classic algorithm (e.g. RFC 2697's committed bucket, without
colours).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from whisper_streaming.errors import UsageError

__all__ = ["TokenBucket"]


class TokenBucket:
    """Starts full.

    Raises:
        UsageError: ``rate_per_s`` < 0 or ``burst`` < 1.
    """

    def __init__(self, rate_per_s: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s < 0 or burst < 1:
            raise UsageError(f"token bucket needs rate >= 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def take(self) -> bool:
        """Spend one token if there is one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until a token is there (0 if one is; ``inf`` at rate 0 when empty)."""
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        return float("inf") if self.rate_per_s == 0 else (1.0 - self._tokens) / self.rate_per_s
