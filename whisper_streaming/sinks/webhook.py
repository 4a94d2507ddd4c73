"""HTTP webhook results sink: POST one JSON body per event, in order, off the audio path.

Asterisk does not read text back over AudioSocket, so a call's results go to sinks (issue 7):
the JSON-lines results log, and this webhook (``results.webhook_url``): one POST per final
result and one when the session ends, for the sessions of every door (:func:`webhook_body`).
The runtime calls :meth:`WebhookSink.publish` (or a caller :meth:`WebhookSink.post_nowait`),
which never blocks and never waits for the network: it encodes the body to JSON and appends it
to a bounded in-memory queue; one background task per sink sends the queue in order, one
request at a time.

Bodies (:func:`webhook_body`).  An AudioSocket call (a session with a ``call_id``)::

    {"event": "result", "call_id": "<uuid>", "start_s": 1.2, "end_s": 3.4, "text": "...",
     "language": "en", "sentiment": null, "score": null}
    {"event": "hangup", "call_id": "<uuid>", "results": 3, "audio_s": 12.5, "reason": "hangup"}

Any other session (TCP; ``session_id`` as in the results log)::

    {"event": "result", "session_id": "c7", "user_id": "alice", "stream_index": 0,
     "start_s": 1.2, "end_s": 3.4, "text": "...", "language": "en", "sentiment": "negative", "score": 0.912}
    {"event": "session_end", "session_id": "c7", "user_id": "alice", "results": 3, "audio_s": 12.5,
     "reason": "closed"}

Delivery rules:

* A 2xx answer delivers the body.  429 and 5xx answers, connection errors, and requests that
  exceed ``timeout_s`` (total, connect to last byte) are retried, at most ``max_retries`` times,
  after ``backoff_s``, ``2 * backoff_s``, ``4 * backoff_s`` ... (each capped at ``backoff_max_s``;
  a ``Retry-After: <seconds>`` header can lengthen the wait, to the same cap).  Other answers
  (3xx, 4xx) fail the body at once: retrying would not help.  A failed body is logged, counted,
  and the next one is sent: one bad body never stalls the queue for longer than its retries.
* When ``max_queue`` bodies wait already, the oldest waiting one is dropped (counted, and logged
  with the running count) to make room: the newest results, and the hangup summary, matter most.
* :meth:`WebhookSink.aclose` stops new posts, keeps sending what is queued until ``deadline_s``,
  then abandons the rest (counted) and closes the HTTP client.

Request: ``POST url`` with ``Content-Type: application/json`` and the body as compact UTF-8
JSON (``ensure_ascii=False``; NaN and infinities are refused at :meth:`~WebhookSink.post_nowait`).
HTTP goes through ``httpx2`` (the maintained successor of ``httpx``, already a dependency of
``huggingface_hub``), with ``http://`` and ``https://`` URLs, no redirects followed.

Threading: a sink belongs to the event loop that first calls :meth:`~WebhookSink.post_nowait`
(which must be called from that loop's thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import httpx2

from whisper_streaming.errors import UsageError
from whisper_streaming.sinks.base import ResultPublished, SessionClosed, SinkEvent, result_json

__all__ = ["WebhookStats", "WebhookSink", "encode_body", "parse_url", "webhook_body"]

log = logging.getLogger(__name__)

_USER_AGENT = "whisper-streaming-webhook"


@dataclass(frozen=True)
class WebhookStats:
    """Counters of one sink (bodies, not requests, except ``retries``).

    Attributes:
        posted: accepted by :meth:`WebhookSink.post_nowait`.
        delivered: answered with a 2xx.
        failed: given up: a 3xx/4xx other than 429, or retries exhausted.
        dropped: never sent: pushed out of a full queue (oldest first) or posted after close.
        abandoned: still queued or in flight when :meth:`WebhookSink.aclose` ran out of time.
        retries: repeated requests (all bodies together).
        pending: waiting in the queue or in flight now.
    """

    posted: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    abandoned: int = 0
    retries: int = 0
    pending: int = 0


def webhook_body(event: SinkEvent) -> dict[str, Any] | None:
    """The JSON body posted for ``event`` (see the module docstring); None: nothing to post."""
    info = event.session
    if isinstance(event, ResultPublished):
        r = event.result
        head: dict[str, Any] = (
            {"event": "result", "call_id": info.call_id} if info.transport == "audiosocket"
            else {"event": "result", "session_id": info.session_id, "user_id": info.user_id, "stream_index": r.stream_index}
        )
        return head | result_json(r)
    if isinstance(event, SessionClosed):
        head = ({"event": "hangup", "call_id": info.call_id} if info.transport == "audiosocket"
                else {"event": "session_end", "session_id": info.session_id, "user_id": info.user_id})
        return head | {"results": event.results, "audio_s": round(event.audio_s, 2), "reason": event.reason}
    return None


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a mapping.

    Raises:
        UsageError: not a mapping, or a value JSON cannot carry (objects, NaN, infinities).
    """
    if not isinstance(body, Mapping):
        raise UsageError(f"webhook body must be a mapping, got {type(body).__name__}")
    try:
        text = json.dumps(dict(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"webhook body is not JSON: {exc}") from None
    return text.encode("utf-8")


def parse_url(url: str) -> httpx2.URL:
    """Check a webhook URL: http:// or https:// with a host.

    Raises:
        UsageError: otherwise.
    """
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError) as exc:
        raise UsageError(f"bad webhook URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"webhook URL must be http:// or https:// with a host, got {url!r}")
    return parsed


class WebhookSink:
    """Posts JSON bodies to one URL from a bounded queue, in order, with bounded retries.

    Args:
        url: ``http://`` or ``https://`` URL to POST to.
        timeout_s: limit for one request, connect to last byte of the answer (seconds, > 0).
        max_retries: repeated requests after the first for one body (>= 0).
        backoff_s: wait before the first retry; doubled each retry (seconds, >= 0).
        backoff_max_s: cap of one wait, also for ``Retry-After`` (seconds, >= ``backoff_s``).
        max_queue: bodies that may wait (>= 1); the oldest is dropped beyond that.
        headers: extra request headers (for instance an ``Authorization`` token).
        client: an ``httpx2.AsyncClient`` to use (not closed by :meth:`aclose`); default: one
            of our own, created at the first post.
        trust_env: let our own client read proxy settings and certificates from the environment.

    Raises:
        UsageError: a bad URL or a parameter out of range.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_queue: int = 1000,
        headers: Mapping[str, str] | None = None,
        client: httpx2.AsyncClient | None = None,
        trust_env: bool = True,
    ) -> None:
        parsed = parse_url(url)
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise UsageError(f"timeout_s must be a positive number, got {timeout_s}")
        if max_retries < 0 or max_queue < 1:
            raise UsageError(f"need max_retries >= 0 and max_queue >= 1, got {max_retries}, {max_queue}")
        if not 0 <= backoff_s <= backoff_max_s:
            raise UsageError(f"need 0 <= backoff_s <= backoff_max_s, got {backoff_s}, {backoff_max_s}")
        self.url = str(parsed)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_queue = int(max_queue)
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **dict(headers or {})}
        self._client = client
        self._own_client = client is None
        self._trust_env = trust_env
        self._queue: collections.deque[bytes] = collections.deque()
        self._in_flight = False
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._posted = self._delivered = self._failed = self._dropped = 0
        self._abandoned = self._retries = 0

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> WebhookStats:
        """A snapshot of the counters."""
        return WebhookStats(
            posted=self._posted,
            delivered=self._delivered,
            failed=self._failed,
            dropped=self._dropped,
            abandoned=self._abandoned,
            retries=self._retries,
            pending=len(self._queue) + self._in_flight,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, event: SinkEvent) -> None:
        """:class:`~whisper_streaming.sinks.base.Sink`: post :func:`webhook_body` of ``event`` (if any) without waiting."""
        body = webhook_body(event)
        if body is not None and not self._closed:
            self.post_nowait(body)

    def post_nowait(self, body: Mapping[str, Any]) -> bool:
        """Queue ``body`` for sending; returns at once, never waits for the network.

        Returns:
            True if queued; False if the sink is closed (the body is counted as dropped).

        Raises:
            UsageError: ``body`` is not a JSON-able mapping, or no event loop runs in this thread.
        """
        data = encode_body(body)
        if self._closed:
            self._dropped += 1
            log.warning("webhook %s: closed, body dropped (%d dropped so far)", self.url, self._dropped)
            return False
        self._ensure_worker()
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self._dropped += 1
            log.warning("webhook %s: queue full (%d), oldest body dropped (%d dropped so far)", self.url, self.max_queue, self._dropped)
        self._queue.append(data)
        self._posted += 1
        assert self._wakeup is not None and self._idle is not None
        self._idle.clear()
        self._wakeup.set()
        return True

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until nothing is queued or in flight; False if ``timeout_s`` passed first."""
        if self._idle is None or self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def aclose(self, deadline_s: float = 5.0) -> WebhookStats:
        """Stop accepting bodies, send what is queued for up to ``deadline_s`` seconds, abandon
        the rest, close our own HTTP client.  Idempotent.  Returns the final counters."""
        self._closed = True
        task = self._task
        left = 0
        if task is not None and not task.done():
            assert self._wakeup is not None
            self._wakeup.set()
            done, _ = await asyncio.wait({task}, timeout=max(deadline_s, 0.0))
            if not done:
                left = len(self._queue) + self._in_flight
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if left:
            self._abandoned += left
            log.warning("webhook %s: closed with %d bodies unsent", self.url, left)
            self._queue.clear()
            self._in_flight = False
        if self._idle is not None:
            self._idle.set()
        if self._own_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
        return self.stats

    async def __aenter__(self) -> WebhookSink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ worker

    def _ensure_worker(self) -> None:
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError("WebhookSink.post_nowait needs a running event loop in this thread") from None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"webhook {self.url}")

    async def _run(self) -> None:
        assert self._wakeup is not None and self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            data = self._queue.popleft()
            self._in_flight = True
            try:
                await self._deliver(data)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one body kill the sink
                self._failed += 1
                log.exception("webhook %s: unexpected error, body failed", self.url)
            finally:
                self._in_flight = False

    async def _deliver(self, data: bytes) -> None:
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                response = await asyncio.wait_for(self._post(data), self.timeout_s)
            except asyncio.TimeoutError:
                last = f"no answer within {self.timeout_s:g} s"
            except (httpx2.HTTPError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._delivered += 1
                    return
                if status != 429 and status < 500:
                    self._failed += 1
                    log.warning("webhook %s: HTTP %d, body not retried", self.url, status)
                    return
                last = f"HTTP {status}"
                retry_after = _retry_after_s(response.headers.get("Retry-After"))
            if attempt == self.max_retries:
                break
            delay = min(self.backoff_s * 2**attempt, self.backoff_max_s)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff_max_s))
            log.info("webhook %s: %s; retry %d of %d in %.2f s", self.url, last, attempt + 1, self.max_retries, delay)
            await asyncio.sleep(delay)
            self._retries += 1
        self._failed += 1
        log.warning("webhook %s: %s; gave up after %d attempts", self.url, last, self.max_retries + 1)

    async def _post(self, data: bytes) -> httpx2.Response:
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self.timeout_s), trust_env=self._trust_env, follow_redirects=False
            )
        return await self._client.post(self.url, content=data, headers=self._headers)


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in delta-seconds form (an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
