"""A WebSocket stand-in for :class:`~whisper_streaming.client.streaming.AsyncStreamingClient`, for the benchmarks.

``bench/stream_bench.py --door websocket`` streams through ``/v1/stream`` (the JSON protocol of
the web door, README "WebSocket streaming") with the same pacing and the same latency
accounting as over TCP, so the two doors can be compared on the same audio.  It implements
only what :func:`bench.stream_bench.run_session` calls: ``connect``, ``set_options``, ``begin``,
``send_audio``, ``receive``, ``send_finish``, ``close``.  Uses the ``websockets`` library's
asyncio client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from whisper_streaming.client import Partial, Result
from whisper_streaming.errors import ConnectionClosedError, ServerError
from whisper_streaming.wire.protocol import Finished

__all__ = ["WsStreamingClient"]


class WsStreamingClient:
    """One WebSocket stream; events come back as the TCP client's ``Result``/``Partial``/``Finished``."""

    def __init__(self, ws: Any, user_id: str) -> None:
        self._ws = ws
        self._user = user_id
        self._options: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(cls, host: str, port: int, *, user_id: str, timeout_s: float = 30.0) -> "WsStreamingClient":
        ws = await asyncio.wait_for(websockets.connect(f"ws://{host}:{port}/v1/stream", max_size=None, compression=None), timeout_s)
        return cls(ws, user_id)

    async def set_options(self, *, partials: bool | None = None, **options: Any) -> dict[str, Any]:
        """Kept for the ``start`` message; the effective options come back in ``started``."""
        if partials is not None:
            self._options["partials"] = partials
        self._options.update(options)
        return {"partials": bool(partials)}

    async def begin(self) -> None:
        await self._ws.send(json.dumps({"type": "start", "user": self._user, **self._options}))
        message = json.loads(await self._ws.recv())
        if message.get("type") == "error":
            raise ServerError(message.get("reason", "?"))
        if message.get("type") != "started":
            raise ConnectionClosedError(f"expected started, got {message!r}")

    async def send_audio(self, pcm: bytes) -> None:
        await self._ws.send(pcm)

    async def receive(self) -> Result | Partial | Finished:
        while True:
            try:
                raw = await self._ws.recv()
            except websockets.ConnectionClosed as exc:
                raise ConnectionClosedError(f"websocket closed: {exc}") from None
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "final":
                return Result(float(message["start"]), float(message["end"]), message.get("text", ""))
            if kind == "partial":
                return Partial(float(message["start"]), float(message["end"]), message.get("stable", ""), message.get("unstable", ""))
            if kind == "finished":
                return Finished()
            if kind == "error":
                raise ServerError(message.get("reason", "?"))

    def send_finish(self) -> None:
        task = asyncio.get_running_loop().create_task(self._ws.send(json.dumps({"type": "finish"})))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self._ws.close()
