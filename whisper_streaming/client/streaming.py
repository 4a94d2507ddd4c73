"""Client library for the ``WHISPER_STREAMING_V1.0`` protocol (asyncio and blocking).

The protocol logic is the same sans-IO codec the server uses
(:class:`~whisper_streaming.wire.protocol.PacketDecoder` in the client role).
:class:`AsyncStreamingClient` runs on asyncio; :class:`StreamingClient` is a blocking facade
that drives an :class:`AsyncStreamingClient` on a private event-loop thread.

Example (asyncio)::

    client = await AsyncStreamingClient.connect("localhost", 5000, user_id="alice")
    await client.begin()
    await client.send_audio(pcm_bytes)           # s16le 16 kHz mono, any even length
    results = await client.finish()              # every %R of the stream, after %F
    await client.close()

Options (``%o``/``%O``) for the following streams, e.g. sentiment::

    accepted = await client.set_options(sentiment=True)    # {"sentiment": True} if the server can
    ...                                                     # results then carry .sentiment, and
    client.last_summary                                     # the stream's %S (a Summary) after finish()
    await client.set_options(language="ko")                 # {"language": "ko"}; or "auto": detect per stream

Partial hypotheses (``%P``), opt-in: after ``set_options(partials=True)`` answered
``{"partials": True}``, :meth:`AsyncStreamingClient.receive` also returns :class:`Partial`
events (the utterance in progress: a stable prefix that only grows and an unstable tail), each
utterance's before its :class:`Result`, which supersedes them.  :meth:`~AsyncStreamingClient.finish`
returns final results only.

TLS and tokens (a server with config ``tls`` / ``auth``)::

    ctx = ssl.create_default_context(cafile="ca.pem")      # or ssl=True: the system's CAs
    client = await AsyncStreamingClient.connect("stt.example.com", 5000, user_id="alice", ssl=ctx,
                                                token=os.environ["WHISPER_STREAMING_TOKEN"])

``token`` is sent as ``%o token=...`` right after ``%u`` (in the same round trip), so every
stream of the connection is allowed; a wrong one makes ``connect``/``login`` raise
:class:`~whisper_streaming.errors.ServerError` with reason ``UNAUTHORIZED``.  A server without
tokens ignores it.

Errors: :class:`~whisper_streaming.errors.ServerError` when the server sends ``%E`` (its
``reason`` is the code); :class:`~whisper_streaming.errors.ConnectionClosedError` when the
connection ends early; :class:`~whisper_streaming.errors.UsageError` for calls in the wrong
state (e.g. ``send_audio`` before ``begin``); ``OSError`` when connecting fails (with TLS:
:class:`ssl.SSLError`, e.g. a certificate the client does not trust, is one).
"""

from __future__ import annotations

import asyncio
import threading
from ssl import SSLContext
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from whisper_streaming.analyzers.sentiment import Sentiment

from whisper_streaming.errors import ConnectionClosedError, RemoteProtocolError, ServerError, UsageError
from whisper_streaming.core.auth import check_token
from whisper_streaming.core.options import TOKEN_OPTION, OptionPairs, decode_accepted, encode_value
from whisper_streaming.wire.protocol import (
    MAGIC,
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    Options,
    OptionsAccepted,
    PacketDecoder,
    ResultFields,
    Role,
    Status,
    StatusRequest,
    Summary,
    UserId,
    Welcome,
    encode_packet,
    max_data_bytes,
)
from whisper_streaming.wire.protocol import Partial as PartialPacket
from whisper_streaming.wire.protocol import Result as ResultPacket
from whisper_streaming.core.speakers import SpeakerMatch
from whisper_streaming.wire.result_fields import sentiment_from_fields, speaker_from_fields

__all__ = ["AsyncStreamingClient", "StreamingClient", "Result", "Partial", "StreamEvent", "MAX_AUDIO_PACKET_BYTES"]

MAX_AUDIO_PACKET_BYTES = 0xFFFE
"""Largest even data length of one ``%s`` packet; longer audio is split."""



@dataclass(frozen=True)
class Result:
    """One final result (``%R``) as the client sees it.

    ``start_s``/``end_s``: seconds since the stream's begin (one decimal on the wire);
    ``sentiment``: the result's sentiment when the stream asked for it (None otherwise);
    ``fields``: every optional field the server sent, in order (unknown keys included);
    ``speaker``: who spoke (an enrolled name, ``unknown``, or ``S1``... with ``speakers="auto"``)
    when the stream labels speakers (None otherwise).
    """

    start_s: float
    end_s: float
    text: str
    sentiment: Sentiment | None = None
    fields: ResultFields = ()
    speaker: SpeakerMatch | None = None

    @classmethod
    def from_packet(cls, packet: ResultPacket) -> Result:
        """Raises: RemoteProtocolError: ``BAD_RESULT`` for a malformed sentiment or speaker field."""
        return cls(packet.start_s, packet.end_s, packet.text, sentiment_from_fields(packet.fields), packet.fields,
                   speaker_from_fields(packet.fields))


@dataclass(frozen=True)
class Partial:
    """One partial hypothesis (``%P``) of the utterance in progress, as the client sees it.

    Only on a connection that asked for them (``set_options(partials=True)``).
    ``start_s``: the utterance's start (the same as its later :class:`Result`); ``end_s``: the
    end of the audio this hypothesis covers; ``stable``: the committed prefix (within one
    utterance each partial's ``stable`` starts with the previous one's); ``unstable``: the rest
    of the newest decode, which may still change.  Both empty: the utterance ended with no
    text (clear the line).  The utterance's :class:`Result` supersedes its partials.
    """

    start_s: float
    end_s: float
    stable: str
    unstable: str

    @property
    def text(self) -> str:
        """The whole hypothesis: ``stable`` and ``unstable`` joined by a space (when both are non-empty)."""
        return f"{self.stable} {self.unstable}" if self.stable and self.unstable else self.stable + self.unstable

    @property
    def is_clear(self) -> bool:
        """True for the empty partial that ends an utterance with no text."""
        return not self.stable and not self.unstable

    @classmethod
    def from_packet(cls, packet: PartialPacket) -> Partial:
        return cls(packet.start_s, packet.end_s, packet.stable, packet.unstable)


StreamEvent = Union[Result, Partial, Summary, Finished]
"""What :meth:`AsyncStreamingClient.receive` returns: a result, a partial hypothesis (only on a
connection that asked for them with ``set_options(partials=True)``), a stream's summary (``%S``,
only for streams with sentiment on; it comes right before that stream's ``Finished``), or the end."""
T = TypeVar("T")


class AsyncStreamingClient:
    """One connection to the server. Create with :meth:`connect`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, length_encoding: str = "hex",
                 token: str | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._length_encoding = length_encoding
        self._max_audio_bytes = max_data_bytes(length_encoding) // 2 * 2
        self._decoder = PacketDecoder(Role.CLIENT, length_encoding=length_encoding)
        self._events: asyncio.Queue[StreamEvent | BaseException] = asyncio.Queue()
        self._welcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._status: list[asyncio.Future[str]] = []
        self._options: list[asyncio.Future[OptionPairs]] = []
        self._failure: BaseException | None = None
        self._streaming = False
        self._encoding = "pcm_s16le"  # what the server accepted with %o encoding=...
        self._open_streams = 0  # streams whose %F has not been consumed yet
        self._partials_asked = False  # %P is delivered only once the client asked for it
        self._token = _checked_token(token)  # sent right after %u
        self.user_id: str | None = None
        self.welcome_message: str | None = None
        self.last_summary: Summary | None = None
        """The last ``%S`` received (see :class:`~whisper_streaming.analyzers.sentiment_stats.SentimentSummary`
        ``.from_text`` to read its numbers)."""
        self._reader_task = asyncio.create_task(self._read_loop(), name="whisper-streaming-client-reader")

    @classmethod
    async def connect(cls, host: str, port: int, *, user_id: str | None = None, timeout_s: float = 10.0,
                      length_encoding: str = "hex", ssl: SSLContext | bool | None = None, token: str | None = None,
                      server_hostname: str | None = None) -> AsyncStreamingClient:
        """Connect, send the magic string and, if ``user_id`` is given, log in (``%u`` -> ``%L``).

        ``length_encoding``: the server's ``network.length_encoding`` (``hex`` or ``decimal``).
        ``ssl``: TLS (a server with config ``tls``): ``True`` verifies the server's certificate
        against the system's CAs, an :class:`ssl.SSLContext` as it says
        (``ssl.create_default_context(cafile=...)`` for a private CA); None or False: plain TCP.
        ``server_hostname``: the name the certificate must have (default: ``host``).
        ``token``: the access token (a server with config ``auth``), sent with ``%o token=...``
        right after ``%u`` (see :meth:`login`); never sent before.

        Raises:
            OSError / asyncio.TimeoutError: cannot connect (:class:`ssl.SSLError` for a failed TLS
                handshake, e.g. a certificate not trusted, or a server that does not speak TLS).
            ServerError: the server answered ``%E`` (e.g. ``SERVER_TOO_BUSY``, ``UNAUTHORIZED``).
            UsageError: ``token`` is not a token (1-512 characters of ``A-Z a-z 0-9 - . _ ~ + /``).
        """
        _checked_token(token)
        tls = ssl or None
        hostname = server_hostname if tls is not None else None
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls, server_hostname=hostname), timeout_s)
        client = cls(reader, writer, length_encoding=length_encoding, token=token)
        writer.write(MAGIC)
        if user_id is not None:
            await asyncio.wait_for(client.login(user_id), timeout_s)
        return client

    async def login(self, user_id: str) -> str:
        """Send ``%u`` and wait for ``%L``; returns the welcome text.

        With a ``token`` (see :meth:`connect`), ``%o token=...`` follows ``%u`` at once and its
        ``%O`` is awaited too (an empty answer: the token is never echoed).

        Raises:
            ServerError: the server answered ``%E`` (``UNAUTHORIZED``: a wrong token).
        """
        if self.user_id is not None:
            raise UsageError("already logged in")
        self._write(UserId(user_id))
        self.user_id = user_id
        accepted: asyncio.Future[OptionPairs] | None = None
        if self._token is not None:
            accepted = asyncio.get_running_loop().create_future()
            self._write(Options(((TOKEN_OPTION, self._token),)))
            self._options.append(accepted)
        self.welcome_message = await self._await(self._welcome)
        if accepted is not None:
            await self._await(accepted)
        return self.welcome_message

    async def set_options(self, *, partials: bool | None = None, **options: Any) -> dict[str, Any]:
        """Send ``%o`` with ``options`` (e.g. ``sentiment=True``, ``language="en"``) and wait for ``%O``.

        The options apply to the following streams.  Returns what the server accepted, with
        effective values (``{"sentiment": False}`` when it cannot do sentiment; ``language`` in
        lower case, ``"auto"`` for detection); keys it does not know are left out (a server older
        than ``language`` answers without it and keeps its ``model.language``).

        ``partials``: ``True`` asks for partial hypotheses (``%o partials=1``; sent after the
        other options): :meth:`receive` then also returns :class:`Partial` events.  The answer
        says ``{"partials": False}`` when the server cannot (one worker, or off in its config) and
        has no ``partials`` from a server older than them.  ``False`` turns them off for the
        following streams; ``None`` (the default) sends nothing about them.

        Raises:
            UsageError: before :meth:`login`, while a stream is open, or for a value with no wire
                form (``language=None``: the server's default cannot be asked for again).
            ServerError: the server refused (``BAD_OPTION``; ``UNKNOWN_HEADER`` from a server
                older than ``%o``).
        """
        if self.user_id is None:
            raise UsageError("login() before set_options()")
        if self._streaming:
            raise UsageError("set_options() while a stream is open; finish() it first")
        if partials is not None:
            options["partials"] = bool(partials)
        pairs: list[tuple[str, str]] = []
        for key, value in options.items():
            try:
                pairs.append((key, encode_value(key, value)))
            except ValueError as exc:
                raise UsageError(f"set_options({key}={value!r}): {exc}") from None
        fut: asyncio.Future[OptionPairs] = asyncio.get_running_loop().create_future()
        self._write(Options(tuple(pairs)))
        self._options.append(fut)
        if partials:
            self._partials_asked = True
        accepted = decode_accepted(await self._await(fut))
        if isinstance(accepted.get("encoding"), str):
            self._encoding = accepted["encoding"]
        return accepted

    async def begin(self) -> None:
        """Send ``%b``: a new stream (result times restart at 0)."""
        if self.user_id is None:
            raise UsageError("login() before begin()")
        if self._streaming:
            raise UsageError("a stream is already open; finish() it first")
        self._write(Begin())
        self._streaming = True
        self._open_streams += 1

    async def send_audio(self, pcm: bytes) -> None:
        """Send audio (split into packets of at most 65534 bytes): s16le 16 kHz mono PCM, or what
        :meth:`set_options` negotiated (``sample_rate=8000, encoding="mulaw"``)."""
        if not self._streaming:
            raise UsageError("begin() before send_audio()")
        if self._encoding == "pcm_s16le" and len(pcm) % 2:
            raise UsageError("PCM s16le needs an even byte count")
        self._raise_failure()
        view = memoryview(pcm)
        step = self._max_audio_bytes
        for i in range(0, len(pcm), step):
            self._writer.write(encode_packet(Audio(bytes(view[i : i + step])), length_encoding=self._length_encoding))
        await self._writer.drain()

    async def receive(self) -> StreamEvent:
        """The next ``Result``, ``Partial``, ``Summary`` or ``Finished`` of the stream(s), in order.

        ``Partial`` only on a connection that asked for partials (``set_options(partials=True)``);
        a ``%P`` that arrives otherwise is dropped, so a caller that never asked never sees one.

        Raises:
            ServerError: the server sent ``%E``.
            ConnectionClosedError: the connection ended.
        """
        if self._events.empty() and self._open_streams == 0:
            raise UsageError("no stream open: nothing to receive")
        event = await self._events.get()
        if isinstance(event, BaseException):
            self._events.put_nowait(event)  # keep failing
            raise event
        if isinstance(event, Finished):
            self._open_streams -= 1
        elif isinstance(event, Summary):
            self.last_summary = event
        return event

    def send_finish(self) -> None:
        """Send ``%f`` without waiting; the results and ``Finished`` then come from :meth:`receive`."""
        if not self._streaming:
            raise UsageError("finish() without begin()")
        self._write(Finish())
        self._streaming = False

    async def finish(self) -> list[Result]:
        """Send ``%f`` and wait for ``%F``; returns the stream's results not yet received.

        Final results only: partial hypotheses (``Partial``) still pending are skipped.  The
        stream's summary, if any, is then in :attr:`last_summary`.
        """
        self.send_finish()
        results: list[Result] = []
        while True:
            event = await self.receive()
            if isinstance(event, Finished):
                if self._open_streams == 0:
                    return results
                results.clear()  # an earlier stream's %F: its results were not ours
            elif isinstance(event, Result):
                results.append(event)

    async def status(self) -> str:
        """Send ``%c`` and return the ``%C`` text."""
        fut = asyncio.get_running_loop().create_future()
        self._status.append(fut)
        self._write(StatusRequest())
        return await self._await(fut)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._writer.is_closing():
            self._writer.close()
        self._reader_task.cancel()
        try:
            await self._reader_task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing anyway
            pass
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def __aenter__(self) -> AsyncStreamingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    def _write(self, packet: Any) -> None:
        self._raise_failure()
        self._writer.write(encode_packet(packet, length_encoding=self._length_encoding))

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _await(self, fut: asyncio.Future[T]) -> T:
        return await fut

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    self._decoder.receive_eof()
                    self._fail(ConnectionClosedError("server closed the connection"))
                    return
                self._decoder.receive_data(data)
                while (packet := self._decoder.next_packet()) is not None:
                    self._dispatch(packet)
        except RemoteProtocolError as exc:
            self._fail(ConnectionClosedError(f"server sent bad data: {exc}"))
        except (ConnectionError, OSError) as exc:
            self._fail(ConnectionClosedError(f"connection lost: {exc}"))

    def _dispatch(self, packet: Any) -> None:
        if isinstance(packet, ResultPacket):
            self._events.put_nowait(Result.from_packet(packet))
        elif isinstance(packet, PartialPacket):
            if self._partials_asked:
                self._events.put_nowait(Partial.from_packet(packet))
        elif isinstance(packet, (Summary, Finished)):
            self._events.put_nowait(packet)
        elif isinstance(packet, OptionsAccepted):
            if self._options:
                self._options.pop(0).set_result(packet.pairs)
        elif isinstance(packet, Status):
            if self._status:
                self._status.pop(0).set_result(packet.text)
        elif isinstance(packet, Welcome):
            if not self._welcome.done():
                self._welcome.set_result(packet.message)
        elif isinstance(packet, Error):
            self._fail(ServerError(packet.reason))

    def _fail(self, exc: BaseException) -> None:
        if self._failure is not None:
            return
        self._failure = exc
        self._events.put_nowait(exc)
        for fut in [self._welcome, *self._status, *self._options]:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: not every waiter exists
        self._status.clear()
        self._options.clear()


def _checked_token(token: str | None) -> str | None:
    """``token`` if it has the token syntax (or None).

    Raises:
        UsageError: not a token (the message never shows it).
    """
    if token is None:
        return None
    try:
        return check_token(token)
    except ValueError as exc:
        raise UsageError(f"token: {exc}") from None


class StreamingClient:
    """Blocking client: the same API as :class:`AsyncStreamingClient`, without ``await``.

    Runs an event loop on a private daemon thread. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, host: str, port: int, *, user_id: str | None = None, timeout_s: float = 10.0, length_encoding: str = "hex",
                 ssl: SSLContext | bool | None = None, token: str | None = None, server_hostname: str | None = None) -> None:
        """Connect as :meth:`AsyncStreamingClient.connect` does (same arguments and errors)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="whisper-streaming-client", daemon=True)
        self._thread.start()
        try:
            self._client: AsyncStreamingClient = self._call(AsyncStreamingClient.connect(host, port, user_id=user_id, timeout_s=timeout_s,
                                                                                         length_encoding=length_encoding, ssl=ssl, token=token,
                                                                                         server_hostname=server_hostname))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def login(self, user_id: str) -> str:
        return self._call(self._client.login(user_id))

    def set_options(self, *, partials: bool | None = None, **options: Any) -> dict[str, Any]:
        return self._call(self._client.set_options(partials=partials, **options))

    @property
    def last_summary(self) -> Summary | None:
        return self._client.last_summary

    def begin(self) -> None:
        self._call(self._client.begin())

    def send_audio(self, pcm: bytes) -> None:
        self._call(self._client.send_audio(pcm))

    def receive(self, timeout_s: float | None = None) -> StreamEvent:
        return self._call(asyncio.wait_for(self._client.receive(), timeout_s))

    def finish(self) -> list[Result]:
        return self._call(self._client.finish())

    def status(self) -> str:
        return self._call(self._client.status())

    def close(self) -> None:
        """Close the connection and stop the loop thread (idempotent)."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> StreamingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
