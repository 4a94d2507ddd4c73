"""TLS and access tokens on the TCP V1.0 door, in-process: a real :class:`Runtime` and
:class:`TcpTransport` on loopback, the real session and VAD on shipped speech, the fake ASR
backend of ``test_inprocess_doors`` (``"job<i> bytes=<n>"``), a certificate made in the test
(trustme).  Also the client library and ``tcp_client.py`` with ``--tls``/``--ca``/``--token``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_inprocess_doors import DATA, JFK, JFK_PCM, JFK_UTTERANCES, TEL, WAIT_S, Client, FakeBackend, RecordingSink, eventually, load, results, serving
from tls_certs import ServerFiles, make_server_files
from whisper_streaming.app.security import build_ssl_context
from whisper_streaming.client.cli import TOKEN_ENV, client_main
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.config.schema import parse_config
from whisper_streaming.core.auth import TokenSet
from whisper_streaming.errors import ErrorReason, ServerError, UsageError
from whisper_streaming.pipeline.session import SessionOptions
from whisper_streaming.runtime.runtime import LIMITED_STATUS_TEXT, Runtime, RuntimeOptions
from whisper_streaming.sinks.base import ResultPublished, SessionClosed
from whisper_streaming.transports.tcp import TcpOptions, TcpTransport
from whisper_streaming.wire.audiosocket import audio_frames, hangup_frame, uuid_frame
from whisper_streaming.wire.protocol import MAGIC, Begin, Error, Finish, Finished, Options, OptionsAccepted, Status, StatusRequest, UserId

pytestmark = pytest.mark.timeout(60)

GOOD = "Good-token_0123456789"
SPARE = "spare.token~+/"
WRONG = "Wrong-token_0123456789"
TOKENS = TokenSet((GOOD, SPARE))
EXPECTED_TEXTS = [f"job{i}" for i in range(len(JFK_UTTERANCES))]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    return make_server_files(tmp_path_factory.mktemp("tls"))


def server_tls(files: ServerFiles) -> ssl.SSLContext:
    """The server context as the app builds it from config ``tls``."""
    ctx = build_ssl_context(parse_config({"tls": {"cert_file": str(files.cert_file), "key_file": str(files.key_file)}}))
    assert ctx is not None
    return ctx


def tls_options(files: ServerFiles, **kw: float) -> TcpOptions:
    return TcpOptions(host="127.0.0.1", port=0, ssl_context=server_tls(files), **kw)  # type: ignore[arg-type]


def with_tokens(tokens: TokenSet | None = TOKENS) -> SessionOptions:
    return SessionOptions(tokens=tokens)


async def tls_client(port: int, ctx: ssl.SSLContext) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    client = Client(reader, writer)
    client.write(MAGIC)
    return client


async def stream_jfk(c: Client) -> list:
    c.send(Begin())
    c.send_audio(JFK_PCM)
    c.send(Finish())
    return await c.until(lambda p: isinstance(p, Finished))


# --------------------------------------------------------------------------- TLS


def test_a_stream_over_tls_gets_every_result(certs: ServerFiles) -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, tcp_options=tls_options(certs)) as srv:
            c = await tls_client(srv.tcp_port, certs.client_context())
            ssl_object = c.writer.get_extra_info("ssl_object")
            assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            await c.hello()
            got = await stream_jfk(c)
            c.close()
            assert not any(isinstance(p, Error) for p in got), got
            assert [r.text.split()[0] for r in results(got)] == EXPECTED_TEXTS
            assert [(r.start_s, r.end_s) for r in results(got)] == [(round(u.start_s, 1), round(u.end_s, 1)) for u in JFK_UTTERANCES]

            # the client library, with the CA's context (and the certificate's other name)
            client = await AsyncStreamingClient.connect("localhost", srv.tcp_port, user_id="bob", ssl=certs.client_context())
            try:
                await client.begin()
                await client.send_audio(JFK_PCM)
                assert [r.text.split()[0] for r in await client.finish()] == ["job3", "job4", "job5"]  # the backend numbers every job
            finally:
                await client.close()

    asyncio.run(main())


def test_a_plain_client_on_the_tls_port_gets_nothing_and_takes_no_slot(certs: ServerFiles) -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, tcp_options=tls_options(certs, handshake_timeout_s=0.5)) as srv:
            plain = await Client.connect(srv.tcp_port)  # the magic string in clear text: not a TLS ClientHello
            plain.send(UserId("alice"), StatusRequest())
            try:
                got = await plain.to_eof()
            except ConnectionResetError:
                got = []
            plain.close()
            assert got == []  # closed without a byte of the protocol

            silent = await asyncio.open_connection("127.0.0.1", srv.tcp_port)  # says nothing: the TLS handshake times out
            assert await asyncio.wait_for(silent[0].read(), 3.0) == b""
            silent[1].close()

            assert srv.runtime.stats.sessions_started == 0 and srv.runtime.session_count == 0
            c = await tls_client(srv.tcp_port, certs.client_context())  # the door still serves TLS peers
            await c.hello()
            c.close()

    asyncio.run(main())


def test_a_tls_client_fails_cleanly_on_a_plain_port_and_on_an_untrusted_or_misnamed_certificate(certs: ServerFiles, tmp_path: Path) -> None:
    backend = FakeBackend()
    stranger = make_server_files(tmp_path / "other")  # another CA: certs' server is not trusted by it

    async def main() -> None:
        async with serving(backend) as plain_srv:
            with pytest.raises(OSError):  # ssl.SSLError or a reset: the plain server sees no magic string
                await AsyncStreamingClient.connect("127.0.0.1", plain_srv.tcp_port, user_id="alice", ssl=certs.client_context(), timeout_s=5)
            await eventually(lambda: plain_srv.runtime.stats.handshake_failures == 1, what="handshake failure counted")
            assert plain_srv.runtime.stats.sessions_started == 0
        async with serving(backend, tcp_options=tls_options(certs)) as srv:
            with pytest.raises(ssl.SSLCertVerificationError):
                await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="alice", ssl=stranger.client_context())
            with pytest.raises(ssl.SSLCertVerificationError):
                await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="alice", ssl=certs.client_context(),
                                                   server_hostname="stt.example.com")
            with pytest.raises(ssl.SSLCertVerificationError):  # ssl=True: the system's CAs do not know the test CA
                await AsyncStreamingClient.connect("localhost", srv.tcp_port, user_id="alice", ssl=True)
            assert srv.runtime.stats.sessions_started == 0

    asyncio.run(main())


# --------------------------------------------------------------------------- tokens


def test_begin_without_a_token_is_unauthorized_and_nothing_is_transcribed() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, session=with_tokens()) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()
            c.send(Begin())
            c.send_audio(JFK_PCM)
            c.send(Finish())
            assert await c.to_eof() == [Error("UNAUTHORIZED")]
            c.close()
            assert backend.jobs == []
            assert srv.runtime.stats.errors["UNAUTHORIZED"] == 1
            await eventually(lambda: srv.runtime.session_count == 0, what="slot freed")

    asyncio.run(main())


@pytest.mark.parametrize("token", [WRONG, GOOD[:-1], GOOD + "0", "", GOOD.lower()])
def test_a_wrong_token_is_unauthorized_at_once(token: str) -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, session=with_tokens()) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()
            c.send(Options((("token", token),)))
            assert await c.to_eof() == [Error("UNAUTHORIZED")]
            c.close()
            assert srv.runtime.stats.errors["UNAUTHORIZED"] == 1

    asyncio.run(main())


@pytest.mark.parametrize("token", [GOOD, SPARE])
def test_a_right_token_streams_as_without_tokens(token: str) -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, session=with_tokens()) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()
            c.send(Options((("token", token), ("sentiment", "0"))))
            assert await c.next() == OptionsAccepted((("sentiment", "0"),))  # the token is never echoed
            got = await stream_jfk(c)
            got += await stream_jfk(c)  # every stream of the connection
            c.close()
            assert [r.text.split()[0] for r in results(got)] == EXPECTED_TEXTS + [f"job{i + 3}" for i in range(3)]
            assert not any(isinstance(p, Error) for p in got)

    asyncio.run(main())


def test_status_before_a_valid_token_is_the_limited_line() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, session=with_tokens(), max_sessions=3) as srv:
            c = await Client.connect(srv.tcp_port)
            c.send(StatusRequest())  # a probe before %u (no slot)
            assert await c.next() == Status(LIMITED_STATUS_TEXT)
            await c.hello()
            c.send(StatusRequest())  # identified, no token yet
            assert await c.next() == Status(LIMITED_STATUS_TEXT)
            c.send(Options((("token", GOOD),)))
            assert await c.next() == OptionsAccepted(())
            c.send(StatusRequest())
            full = await c.next()
            assert isinstance(full, Status) and "sessions: 1/3" in full.text.splitlines() and "engine 0: idle" in full.text
            c.close()
            assert "sessions" not in LIMITED_STATUS_TEXT and "engine" not in LIMITED_STATUS_TEXT

    asyncio.run(main())


def test_a_session_without_a_token_is_closed_at_the_identify_timeout() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, session=with_tokens(), tcp_options=TcpOptions(host="127.0.0.1", port=0, identify_timeout_s=0.5)) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()  # takes a slot ...
            assert srv.runtime.session_count == 1
            assert await c.to_eof(3.0) == [Error("TIMEOUT")]  # ... for identify_timeout_s only, without a token
            c.close()
            await eventually(lambda: srv.runtime.session_count == 0, what="slot freed")

            ok = await Client.connect(srv.tcp_port)  # with a token in time, the session stays open past it
            await ok.hello()
            ok.send(Options((("token", GOOD),)))
            assert await ok.next() == OptionsAccepted(())
            await asyncio.sleep(0.8)
            got = await stream_jfk(ok)
            ok.close()
            assert [r.text.split()[0] for r in results(got)] == EXPECTED_TEXTS

    asyncio.run(main())


def test_tokens_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with serving(backend, session=with_tokens()) as srv:
            for token in (WRONG, GOOD):
                c = await Client.connect(srv.tcp_port)
                await c.hello()
                c.send(Options((("token", token),)))
                if token == GOOD:
                    await c.next()
                    await stream_jfk(c)
                c.close()
            bad = await Client.connect(srv.tcp_port)
            await bad.hello()
            bad.write(b"%o" + b"0013" + b"token" + GOOD[:14].encode())  # malformed (no '='): a protocol error
            await bad.to_eof()
            bad.close()
            await eventually(lambda: srv.runtime.session_count == 0, what="sessions closed")

    asyncio.run(main())
    text = caplog.text
    assert "UNAUTHORIZED" in text or "wrong token" in text  # the refusal is logged ...
    for secret in (GOOD, WRONG, GOOD[:14]):
        assert secret not in text  # ... never the token


def test_the_audiosocket_door_needs_no_token() -> None:
    backend = FakeBackend()
    sink = RecordingSink()
    tel = load(TEL)

    async def main() -> None:
        async with serving(backend, sinks=(sink,), audiosocket=True, session=with_tokens()) as srv:
            assert srv.audiosocket_port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(uuid_frame(uuid.uuid4()) + b"".join(audio_frames(tel, 8000, 20)) + hangup_frame())
            await eventually(lambda: sink.of(SessionClosed), what="call end")
            writer.close()
            assert sink.of(ResultPublished) and sink.of(SessionClosed)[0].reason == "hangup"

    asyncio.run(main())


# --------------------------------------------------------------------------- the client library


def test_client_library_token_right_wrong_and_missing() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, session=with_tokens()) as srv:
            client = await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="alice", token=GOOD)
            try:
                await client.begin()
                await client.send_audio(JFK_PCM)
                assert [r.text.split()[0] for r in await client.finish()] == EXPECTED_TEXTS
                assert "sessions: 1/" in await client.status()
            finally:
                await client.close()

            with pytest.raises(ServerError) as info:
                await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="alice", token=WRONG)
            assert info.value.reason == ErrorReason.UNAUTHORIZED

            client = await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port)
            try:
                assert await client.status() == LIMITED_STATUS_TEXT  # a probe without a token
                await client.login("carol")
                await client.begin()
                await client.send_audio(JFK_PCM[:32000])
                with pytest.raises(ServerError) as info:
                    await client.finish()
                assert info.value.reason == ErrorReason.UNAUTHORIZED
            finally:
                await client.close()

            with pytest.raises(UsageError) as usage:  # not a token: refused before connecting, without showing it
                await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="alice", token="bad token;x")
            assert "bad token" not in str(usage.value)

    asyncio.run(main())


def test_a_token_against_a_server_without_tokens_changes_nothing() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend) as srv:
            client = await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="alice", token=GOOD)
            try:
                assert "sessions: 1/" in await client.status()
                await client.begin()
                await client.send_audio(JFK_PCM)
                assert [r.text.split()[0] for r in await client.finish()] == EXPECTED_TEXTS
            finally:
                await client.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- tcp_client.py


@contextmanager
def server_thread(tcp_options: TcpOptions, session: SessionOptions) -> Iterator[int]:
    """The door on a fake backend in a loop on a thread (``client_main`` runs its own loop); yields the port."""
    loop = asyncio.new_event_loop()
    started: list[int] = []
    ready = threading.Event()
    stop: list[asyncio.Event] = []

    async def run() -> None:
        runtime = Runtime(RuntimeOptions(session=session), FakeBackend())
        door = TcpTransport(runtime, tcp_options)
        runtime.add_transport(door)
        await runtime.start()
        assert door.address is not None
        started.append(door.address[1])
        stop.append(asyncio.Event())
        ready.set()
        await stop[0].wait()
        await runtime.shutdown()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield started[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(20)
        loop.close()


def test_tcp_client_tls_ca_and_token(certs: ServerFiles, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    wav = str(DATA / JFK.name)
    with server_thread(tls_options(certs), with_tokens()) as port:
        base = ["--ip", "localhost", "--port", str(port), "--speed", "0", "--ifn", wav]
        monkeypatch.setenv(TOKEN_ENV, GOOD)
        assert client_main([*base, "--ca", str(certs.ca_file)]) == 0  # --ca implies --tls; the token from the environment
        out, err = capsys.readouterr()
        assert [line.split(" : ")[1].split()[0] for line in out.splitlines()] == EXPECTED_TEXTS and err == ""

        assert client_main(["--ip", "localhost", "--port", str(port), "--status", "--tls", "--ca", str(certs.ca_file)]) == 0
        assert "sessions: 1/" in capsys.readouterr().out  # logged in with the token: the full status

        monkeypatch.delenv(TOKEN_ENV)
        assert client_main([*base, "--ca", str(certs.ca_file)]) == 2
        assert "UNAUTHORIZED" in capsys.readouterr().err
        assert client_main([*base, "--ca", str(certs.ca_file), "--token", WRONG]) == 2
        assert "UNAUTHORIZED" in capsys.readouterr().err

        assert client_main([*base, "--token", GOOD]) == 1  # plain TCP to a TLS port: fails cleanly
        assert "cannot talk to" in capsys.readouterr().err
        assert client_main([*base, "--tls", "--token", GOOD]) == 1  # the system's CAs do not trust the test CA
        assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
        assert client_main([*base, "--ca", str(certs.key_file), "--token", GOOD]) == 3  # not a CA file
        assert "--ca" in capsys.readouterr().err
