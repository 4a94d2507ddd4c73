"""Client library and tcp_client.py against a scripted fake server (no model, fast)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from whisper_streaming.client import Result as ClientResult
from whisper_streaming.client.audio_files import load_pcm16
from whisper_streaming.client.streaming import AsyncStreamingClient, StreamingClient
from whisper_streaming.errors import ConnectionClosedError, ServerError, UsageError
from bench.server_process import REPO_ROOT
from whisper_streaming.wire.protocol import (
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    PacketDecoder,
    Result,
    Role,
    Status,
    StatusRequest,
    UserId,
    Welcome,
    encode_packet,
)

Script = Callable[[object, list], list]


class FakeServer:
    """A scripted server on a thread: ``script(packet, received) -> packets to send`` (None closes)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.received: list = []
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = PacketDecoder(Role.SERVER)
            try:
                while data := await reader.read(65536):
                    decoder.receive_data(data)
                    for packet in decoder.packets():
                        self.received.append(packet)
                        replies = self.script(packet, self.received)
                        if replies is None:
                            writer.close()
                            return
                        for reply in replies:
                            writer.write(encode_packet(reply))
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(main())

    def close(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(5)


def echo_script(packet: object, received: list) -> list | None:
    """Welcome on %u, a result per 1 s of audio received, %F on %f, status on %c."""
    if isinstance(packet, UserId):
        return [Welcome("hi " + packet.user_id)]
    if isinstance(packet, StatusRequest):
        return [Status("engine 0: idle")]
    if isinstance(packet, Audio):
        samples = sum(len(p.pcm) // 2 for p in received if isinstance(p, Audio))
        before = samples - len(packet.pcm) // 2
        return [Result(s / 16000, s / 16000 + 1, f"second {s // 16000}") for s in range(16000 * (before // 16000 + 1), samples + 1, 16000)]
    if isinstance(packet, Finish):
        return [Result(9.0, 9.5, "last words"), Finished()]
    return []


@pytest.fixture
def fake() -> Iterator[Callable[[Script], FakeServer]]:
    servers: list[FakeServer] = []

    def make(script: Script) -> FakeServer:
        servers.append(FakeServer(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_async_client_session(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(echo_script)

    async def run() -> tuple[str, list, list, str]:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="alice") as client:
            welcome = client.welcome_message
            await client.begin()
            await client.send_audio(b"\x00\x00" * 40000)  # 2.5 s, split into packets <= 65534 bytes
            first = await client.receive()
            results = await client.finish()
            status = await client.status()
            return welcome, [first], results, status

    welcome, first, results, status = asyncio.run(run())
    assert welcome == "hi alice"
    assert first == [ClientResult(1.0, 2.0, "second 1")]
    assert [r.text for r in results] == ["second 2", "last words"]
    assert status == "engine 0: idle"
    audio = [p for p in server.received if isinstance(p, Audio)]
    assert sum(len(p.pcm) for p in audio) == 80000 and max(len(p.pcm) for p in audio) <= 0xFFFE
    assert [type(p) for p in server.received if not isinstance(p, Audio)] == [UserId, Begin, Finish, StatusRequest]


def test_sync_client(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(echo_script)
    with StreamingClient("127.0.0.1", server.port, user_id="bob") as client:
        client.begin()
        client.send_audio(b"\x01\x00" * 16000)
        assert client.finish() == [ClientResult(1.0, 2.0, "second 1"), ClientResult(9.0, 9.5, "last words")]
        client.begin()  # a second stream on the same connection
        assert [r.text for r in client.finish()] == ["last words"]
        assert client.status() == "engine 0: idle"
    client.close()  # idempotent


def test_server_error_raises_with_reason(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(lambda p, r: [Error("SERVER_TOO_BUSY")] if isinstance(p, UserId) else [])

    async def run() -> None:
        await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="x")

    with pytest.raises(ServerError) as exc:
        asyncio.run(run())
    assert exc.value.reason == "SERVER_TOO_BUSY"


def test_connection_closed_midstream(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(lambda p, r: None if isinstance(p, Finish) else echo_script(p, r))

    async def run() -> None:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="x") as client:
            await client.begin()
            await client.finish()

    with pytest.raises(ConnectionClosedError):
        asyncio.run(run())


def test_usage_errors(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(echo_script)

    async def run() -> list[str]:
        caught = []
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port) as client:
            for call in (client.begin(), client.send_audio(b"\x00\x00")):
                try:
                    await call
                except UsageError as exc:
                    caught.append(str(exc))
            await client.login("x")
            await client.begin()
            with pytest.raises(UsageError):
                await client.send_audio(b"\x00")
            with pytest.raises(UsageError):
                await client.begin()
        return caught

    assert len(asyncio.run(run())) == 2


def test_cli_exit_codes(fake: Callable[[Script], FakeServer], tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, (np.sin(np.arange(8000 * 2) / 8000 * 2 * np.pi * 440) * 0.3).astype(np.float32), 8000)
    ok = fake(echo_script)
    cmd = [sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", "127.0.0.1", "--speed", "0"]
    run = subprocess.run([*cmd, "--port", str(ok.port), "--ifn", str(wav)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["1.0 2.0 : second 1", "2.0 3.0 : second 2", "9.0 9.5 : last words"]  # 2 s at 8 kHz -> 32000 samples at 16 kHz

    busy = fake(lambda p, r: [Error("SERVER_TOO_BUSY")] if isinstance(p, UserId) else [])
    run = subprocess.run([*cmd, "--port", str(busy.port), "--ifn", str(wav)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "SERVER_TOO_BUSY" in run.stderr

    run = subprocess.run([*cmd, "--port", str(ok.port)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--ifn is required" in run.stderr  # argparse usage error


def test_load_pcm16_resamples_and_mixes(tmp_path: Path) -> None:
    stereo = np.stack([np.full(44100, 0.5), np.full(44100, -0.5)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "s.flac", stereo, 44100)
    pcm = load_pcm16(tmp_path / "s.flac")
    assert pcm.dtype == np.int16 and abs(len(pcm) - 16000) <= 1 and np.abs(pcm).max() <= 1
    (tmp_path / "odd.pcm").write_bytes(b"\x00\x00\x00")
    with pytest.raises(UsageError):
        load_pcm16(tmp_path / "odd.pcm")
    (tmp_path / "ok.pcm").write_bytes(b"\x01\x00\x02\x00")
    assert load_pcm16(tmp_path / "ok.pcm").tolist() == [1, 2]


# --------------------------------------------------------------------------- options, sentiment, summary

from whisper_streaming.core.options import StreamOptions, negotiate  # noqa: E402
from whisper_streaming.wire.protocol import Options, OptionsAccepted, Summary  # noqa: E402
from whisper_streaming.analyzers.sentiment import Sentiment  # noqa: E402
from whisper_streaming.wire.result_fields import sentiment_fields  # noqa: E402

SUMMARY = "results: 2\npositive: 1 (50.0%)\nnegative: 1 (50.0%)\nneutral: 0 (0.0%)\nunsupported: 0\nmean score: 0.800"


def sentiment_script(packet: object, received: list) -> list | None:
    """Like the real server: %O for %o; with sentiment on, fields in %R and %S before %F."""
    on = negotiate(StreamOptions(), tuple(kv for p in received if isinstance(p, Options) for kv in p.pairs))[0].sentiment
    if isinstance(packet, Options):
        return [OptionsAccepted(negotiate(StreamOptions(), packet.pairs)[1])]
    if isinstance(packet, Finish) and on:
        return [Result(0.5, 1.0, "love it", sentiment_fields(Sentiment("positive", 0.9))), Result(1.5, 2.0, "hate it", sentiment_fields(Sentiment("negative", 0.7))), Summary(SUMMARY), Finished()]
    return echo_script(packet, received)


def test_async_client_set_options_results_and_summary(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(sentiment_script)

    async def run() -> tuple[dict, list, list, object]:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="alice") as client:
            await client.begin()
            with pytest.raises(UsageError):
                await client.set_options(sentiment=True)  # while streaming
            await client.finish()
            assert client.last_summary is None  # the legacy stream had none
            accepted = await client.set_options(sentiment=True, future_option=8000)
            await client.begin()
            events = []
            client.send_finish()
            while not isinstance(event := await client.receive(), Finished):
                events.append(event)
            await client.begin()
            results = await client.finish()
            return accepted, events, results, client.last_summary

    accepted, events, results, summary = asyncio.run(run())
    assert accepted == {"sentiment": True}  # the unknown key is left out by the server
    assert [type(e).__name__ for e in events] == ["Result", "Result", "Summary"]
    assert events[0].sentiment == Sentiment("positive", 0.9)
    assert [r.sentiment.label for r in results] == ["positive", "negative"]  # finish() skips the summary
    assert summary == Summary(SUMMARY)
    assert Options((("sentiment", "1"), ("future_option", "8000"))) in server.received


def test_set_options_before_login_is_a_usage_error_and_server_refusal_raises(fake: Callable[[Script], FakeServer]) -> None:
    old_server = fake(lambda p, r: [Error("UNKNOWN_HEADER")] if isinstance(p, Options) else echo_script(p, r))

    async def run() -> None:
        async with await AsyncStreamingClient.connect("127.0.0.1", old_server.port) as client:
            with pytest.raises(UsageError):
                await client.set_options(sentiment=True)
            await client.login("x")
            await client.set_options(sentiment=True)

    with pytest.raises(ServerError, match="UNKNOWN_HEADER"):
        asyncio.run(run())


def test_sync_client_set_options(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(sentiment_script)
    with StreamingClient("127.0.0.1", server.port, user_id="bob") as client:
        assert client.set_options(sentiment=True) == {"sentiment": True}
        client.begin()
        assert [r.text for r in client.finish()] == ["love it", "hate it"]
        assert client.last_summary == Summary(SUMMARY)


def test_cli_sentiment(fake: Callable[[Script], FakeServer], tmp_path: Path) -> None:
    (tmp_path / "a.pcm").write_bytes(b"\x00\x00" * 8000)
    server = fake(sentiment_script)
    cmd = [sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", "127.0.0.1", "--port", str(server.port), "--speed", "0", "--ifn", str(tmp_path / "a.pcm")]
    run = subprocess.run([*cmd, "--sentiment"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["0.5 1.0 : love it  [positive 0.900]", "1.5 2.0 : hate it  [negative 0.700]", "summary:", *SUMMARY.splitlines()]
    fresh = fake(sentiment_script)  # (a fake server's received packets span its connections)
    plain = subprocess.run([*cmd[:4], "--port", str(fresh.port), *cmd[6:]], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and plain.stdout.splitlines() == ["9.0 9.5 : last words"]
    assert not any(isinstance(p, Options) for p in fresh.received)


def test_set_options_audio_format_and_odd_g711_bytes(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(sentiment_script)

    async def run() -> dict:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="tel") as client:
            await client.begin()
            with pytest.raises(UsageError):
                await client.send_audio(b"\x00")  # s16le: whole samples only
            await client.finish()
            accepted = await client.set_options(sample_rate=8000, encoding="mulaw")
            await client.begin()
            await client.send_audio(b"\xff" * 241)  # one byte a sample: any count
            await client.finish()
            return accepted

    assert asyncio.run(run()) == {"sample_rate": 8000, "encoding": "mulaw"}
    assert Options((("sample_rate", "8000"), ("encoding", "mulaw"))) in server.received
    assert Audio(b"\xff" * 241) in server.received


def test_load_for_stream_converts_rate_and_encoding(tmp_path: Path) -> None:
    from whisper_streaming.client.cli import load_for_stream

    t = np.arange(16000) / 16000
    x = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    (tmp_path / "a.pcm").write_bytes(x.tobytes())  # raw: 16 kHz s16le
    soundfile.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    assert load_for_stream(str(tmp_path / "a.pcm")) == x.tobytes()  # the defaults change nothing
    for name in ("a.pcm", "a.wav"):
        mulaw = load_for_stream(str(tmp_path / name), sample_rate=8000, encoding="mulaw")
        assert len(mulaw) == 8000  # 1 s at 8 kHz, one byte a sample
        assert len(load_for_stream(str(tmp_path / name), sample_rate=8000)) == 16000


# --------------------------------------------------------------------------- %o language

from whisper_streaming.client.cli import client_main  # noqa: E402
from whisper_streaming.errors import RemoteProtocolError  # noqa: E402


def options_script(packet: object, received: list) -> list | None:
    """%O from the real negotiation (an invalid value: %E BAD_OPTION), otherwise like echo_script."""
    if isinstance(packet, Options):
        try:
            return [OptionsAccepted(negotiate(StreamOptions(), packet.pairs)[1])]
        except RemoteProtocolError as exc:
            return [Error(exc.reason)]
    return echo_script(packet, received)


def pre_language_script(packet: object, received: list) -> list | None:
    """A server older than ``language``: it knows the other keys, leaves ``language`` out of %O."""
    if isinstance(packet, Options):
        return [OptionsAccepted(negotiate(StreamOptions(), tuple(kv for kv in packet.pairs if kv[0] != "language"))[1])]
    return echo_script(packet, received)


def sent_options(server: FakeServer) -> list:
    return [p for p in server.received if isinstance(p, Options)]


def test_sync_client_set_language(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(options_script)
    with StreamingClient("127.0.0.1", server.port, user_id="bob") as client:
        assert client.set_options(language="EN") == {"language": "en"}  # the server's %O, normalized
        assert client.set_options(language="auto", sentiment=False) == {"language": "auto", "sentiment": False}
        with pytest.raises(UsageError, match="language=None"):
            client.set_options(language=None)  # no wire form: nothing is sent
        client.begin()
        assert [r.text for r in client.finish()] == ["last words"]
        with pytest.raises(ServerError) as exc:
            client.set_options(language="xx")
        assert exc.value.reason == "BAD_OPTION"
    assert sent_options(server) == [Options((("language", "EN"),)), Options((("language", "auto"), ("sentiment", "0"))), Options((("language", "xx"),))]


def test_async_client_language_from_an_older_server(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(pre_language_script)

    async def run() -> dict:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="alice") as client:
            return await client.set_options(sentiment=True, language="ko")

    assert asyncio.run(run()) == {"sentiment": True}  # no "language": the server keeps its own
    assert sent_options(server) == [Options((("sentiment", "1"), ("language", "ko")))]


@pytest.fixture
def pcm_file(tmp_path: Path) -> str:
    (tmp_path / "a.pcm").write_bytes(b"\x00\x00" * 8000)  # 0.5 s at 16 kHz
    return str(tmp_path / "a.pcm")


def cli(port: int, pcm: str, *extra: str) -> int:
    return client_main(["--ip", "127.0.0.1", "--port", str(port), "--speed", "0", "--ifn", pcm, *extra])


def test_cli_language_joins_the_other_options_in_one_o(fake: Callable[[Script], FakeServer], pcm_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = fake(options_script)
    assert cli(server.port, pcm_file, "--sentiment", "--rate", "8000", "--encoding", "mulaw", "--language", "EN") == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[-1] == "9.0 9.5 : last words"
    assert sent_options(server) == [Options((("sentiment", "1"), ("sample_rate", "8000"), ("encoding", "mulaw"), ("language", "en")))]

    alone = fake(options_script)
    assert cli(alone.port, pcm_file, "--language", "auto") == 0
    assert capsys.readouterr().err == ""
    assert sent_options(alone) == [Options((("language", "auto"),))]


@pytest.mark.parametrize("code", ["xx", "english", "", "en-US"])
def test_cli_rejects_an_invalid_language_before_connecting(fake: Callable[[Script], FakeServer], pcm_file: str, capsys: pytest.CaptureFixture[str], code: str) -> None:
    server = fake(options_script)
    assert cli(server.port, pcm_file, "--language", code) == 3
    err = capsys.readouterr().err
    assert "--language" in err and "not a Whisper language code" in err
    assert server.received == []  # nothing sent: not even connected


def test_cli_warns_when_the_server_does_not_know_language(fake: Callable[[Script], FakeServer], pcm_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = fake(pre_language_script)
    assert cli(server.port, pcm_file, "--language", "ko", "--sentiment") == 0  # goes on
    out, err = capsys.readouterr()
    assert out.splitlines() == ["9.0 9.5 : last words"]
    assert err.startswith("warning: the server does not know %o language")
    assert len(err.splitlines()) == 1  # sentiment was accepted: no warning for it
    assert sent_options(server) == [Options((("sentiment", "1"), ("language", "ko")))]


# --------------------------------------------------------------------------- %P partial hypotheses

import io  # noqa: E402
import os  # noqa: E402

from whisper_streaming.client import Partial as ClientPartial  # noqa: E402
from whisper_streaming.client.cli import TranscriptPrinter, stream_file  # noqa: E402
from whisper_streaming.wire.protocol import Partial  # noqa: E402

UTTERANCES = [  # what a server sends for a stream with partials on: two utterances, one that ended empty
    Partial(0.0, 0.5, "", "ask"),
    Partial(0.0, 1.0, "ask", "not what"),
    Partial(0.0, 1.2, "ask not", "what your"),
    Result(0.0, 1.5, "Ask not what your country."),
    Partial(2.0, 2.5, "", "uh"),
    Partial(2.0, 2.6, "", ""),  # the utterance ended with no text: clear the line
    Partial(3.0, 3.5, "", "can do"),
    Result(3.0, 4.0, "can do"),
]
FINALS = [ClientResult(0.0, 1.5, "Ask not what your country."), ClientResult(3.0, 4.0, "can do")]


def partials_script(packet: object, received: list, *, obey: bool = True, workers: int = 2) -> list | None:
    """The real negotiation (``partials=0`` with one worker); on %f the scripted utterances, with
    their %P only when the stream asked (``obey=False``: a broken server that always sends them)."""
    policy = {"partials": lambda v: v and workers > 1}
    if isinstance(packet, Options):
        return [OptionsAccepted(negotiate(StreamOptions(), packet.pairs, policy)[1])]
    if isinstance(packet, Finish):
        on = negotiate(StreamOptions(), tuple(kv for p in received if isinstance(p, Options) for kv in p.pairs), policy)[0].partials
        return [e for e in UTTERANCES if on or not obey or not isinstance(e, Partial)] + [Finished()]
    return echo_script(packet, received)


def test_partial_text_joins_stable_and_unstable() -> None:
    assert ClientPartial(0, 1, "ask not", "what your").text == "ask not what your"
    assert ClientPartial(0, 1, "ask not", "").text == "ask not"
    assert ClientPartial(0, 1, "", "what").text == "what"
    assert ClientPartial(0, 1, "", "").text == "" and ClientPartial(0, 1, "", "").is_clear
    assert not ClientPartial(0, 1, "", "x").is_clear
    with pytest.raises(AttributeError):
        ClientPartial(0, 1, "a", "b").stable = "c"  # type: ignore[misc]  # frozen


def test_partials_are_delivered_in_order_between_results_and_finish_skips_them(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(partials_script)

    async def run() -> tuple[dict, list, list]:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="alice") as client:
            accepted = await client.set_options(partials=True)
            await client.begin()
            client.send_finish()
            events = []
            while not isinstance(event := await client.receive(), Finished):
                events.append(event)
            await client.begin()
            return accepted, events, await client.finish()

    accepted, events, finished = asyncio.run(run())
    assert accepted == {"partials": True}
    assert events == [ClientPartial(0.0, 0.5, "", "ask"), ClientPartial(0.0, 1.0, "ask", "not what"), ClientPartial(0.0, 1.2, "ask not", "what your"),
                      FINALS[0], ClientPartial(2.0, 2.5, "", "uh"), ClientPartial(2.0, 2.6, "", ""), ClientPartial(3.0, 3.5, "", "can do"), FINALS[1]]
    assert events[2].text == "ask not what your"
    assert finished == FINALS  # the second stream had partials too (server.received shows one %o): finish() drops them


def test_partials_never_reach_a_client_that_did_not_ask(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(lambda p, r: partials_script(p, r, obey=False))  # sends %P to everyone

    async def run() -> list:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="legacy") as client:
            await client.begin()
            client.send_finish()
            events = []
            while not isinstance(event := await client.receive(), Finished):
                events.append(event)
            return events

    assert asyncio.run(run()) == FINALS  # a legacy receive() loop never sees a Partial
    with StreamingClient("127.0.0.1", server.port, user_id="legacy") as client:
        client.begin()
        assert client.finish() == FINALS
    assert not any(isinstance(p, Options) for p in server.received)


def test_set_options_sends_partials(fake: Callable[[Script], FakeServer]) -> None:
    two = fake(partials_script)
    with StreamingClient("127.0.0.1", two.port, user_id="bob") as client:
        assert client.set_options(partials=True, sentiment=True) == {"sentiment": True, "partials": True}
        assert client.set_options(partials=False) == {"partials": False}
        assert client.set_options(language="en") == {"language": "en"}  # partials=None: not sent
    assert sent_options(two) == [Options((("sentiment", "1"), ("partials", "1"))), Options((("partials", "0"),)), Options((("language", "en"),))]

    one = fake(lambda p, r: partials_script(p, r, workers=1))  # a server that cannot: partials=0, no %P

    async def run() -> tuple[dict, list]:
        async with await AsyncStreamingClient.connect("127.0.0.1", one.port, user_id="alice") as client:
            accepted = await client.set_options(partials=True)
            await client.begin()
            return accepted, await client.finish()

    assert asyncio.run(run()) == ({"partials": False}, FINALS)
    assert sent_options(one) == [Options((("partials", "1"),))]


def test_stream_file_returns_only_finals_and_prints_partials(fake: Callable[[Script], FakeServer]) -> None:
    server = fake(partials_script)

    async def run(out: io.StringIO) -> list:
        async with await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="alice") as client:
            await client.set_options(partials=True)
            return await stream_file(client, b"\x00\x00" * 800, speed=0, out=out)

    out = io.StringIO()
    assert asyncio.run(run(out)) == FINALS
    assert out.getvalue().count("partial: ") == 6 and out.getvalue().endswith("3.0 4.0 : can do\n")


def test_cli_partials_not_a_tty_prints_each_partial_on_its_own_line(fake: Callable[[Script], FakeServer], pcm_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = fake(partials_script)
    assert cli(server.port, pcm_file, "--partials") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "partial: 0.0 0.5 : \task",
        "partial: 0.0 1.0 : ask\tnot what",
        "partial: 0.0 1.2 : ask not\twhat your",
        "0.0 1.5 : Ask not what your country.",
        "partial: 2.0 2.5 : \tuh",
        "partial: 2.0 2.6 : \t",
        "partial: 3.0 3.5 : \tcan do",
        "3.0 4.0 : can do",
    ]
    assert sent_options(server) == [Options((("partials", "1"),))]

    plain = fake(partials_script)  # without --partials: no %o, today's bytes
    assert cli(plain.port, pcm_file) == 0
    assert capsys.readouterr().out == "0.0 1.5 : Ask not what your country.\n3.0 4.0 : can do\n"
    assert sent_options(plain) == []


def test_cli_partials_warns_when_the_server_cannot(fake: Callable[[Script], FakeServer], pcm_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = fake(lambda p, r: partials_script(p, r, workers=1))
    assert cli(server.port, pcm_file, "--partials", "--sentiment") == 0
    out, err = capsys.readouterr()
    assert out == "0.0 1.5 : Ask not what your country.\n3.0 4.0 : can do\n"
    assert err.startswith("warning: the server does not send partials") and len(err.splitlines()) == 1  # sentiment was accepted
    assert sent_options(server) == [Options((("sentiment", "1"), ("partials", "1")))]


DIM, OFF, EOL = "\x1b[2m", "\x1b[0m", "\x1b[K"
LIVE = (f"\r{DIM}ask{OFF}{EOL}"  # stable empty: the whole line dimmed
        f"\rask{DIM} not what{OFF}{EOL}"
        f"\rask not{DIM} what your{OFF}{EOL}"
        f"\r{EOL}0.0 1.5 : Ask not what your country.\n"  # the final replaces the line
        f"\r{DIM}uh{OFF}{EOL}"
        f"\r{EOL}"  # the empty partial clears it
        f"\r{DIM}can do{OFF}{EOL}"
        f"\r{EOL}3.0 4.0 : can do\n")


def test_transcript_printer_redraws_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    printer = TranscriptPrinter(out, live=True, columns=80)
    for event in UTTERANCES:
        if isinstance(event, Partial):
            printer.partial(ClientPartial(event.start_s, event.end_s, event.stable, event.unstable))
        else:
            printer.line(f"{event.start_s:.1f} {event.end_s:.1f} : {event.text}")
    assert out.getvalue() == LIVE
    assert not TranscriptPrinter(io.StringIO()).live  # a StringIO is no terminal

    cleared = io.StringIO()
    printer = TranscriptPrinter(cleared, live=True, columns=80)
    printer.partial(ClientPartial(0, 1, "", ""))  # nothing shown: nothing to clear
    printer.partial(ClientPartial(0, 1, "", "uh"))
    printer.partial(ClientPartial(0, 1, "", ""))
    printer.line("summary:")  # the line is already clear: written as print() would
    assert cleared.getvalue() == f"\r{DIM}uh{OFF}{EOL}\r{EOL}summary:\n"

    narrow = io.StringIO()
    printer = TranscriptPrinter(narrow, live=True, columns=12)  # keeps the newest words, cut from the left
    printer.partial(ClientPartial(0, 1, "ask not what", "your country"))
    printer.partial(ClientPartial(0, 1, "ask not what your", "co"))
    printer.partial(ClientPartial(0, 1, "그는 이리저리", "피하면서"))  # wide characters: two columns each
    printer.partial(ClientPartial(0, 1, "bad\x1b[31m", "x"))  # no escape from the peer reaches the terminal
    printer.close()  # a partial left shown at the end is cleared
    assert narrow.getvalue() == (f"\r…{DIM}ur country{OFF}{EOL}"  # 11 columns: the 12th is never written
                                 f"\r…at your{DIM} co{OFF}{EOL}"
                                 f"\r…{DIM} 피하면서{OFF}{EOL}"
                                 f"\rbad [31m{DIM} x{OFF}{EOL}"
                                 f"\r{EOL}")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty")
def test_cli_partials_on_a_terminal_redraws_in_place(fake: Callable[[Script], FakeServer], pcm_file: str) -> None:
    server = fake(partials_script)
    master, slave = os.openpty()
    cmd = [sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", "127.0.0.1", "--port", str(server.port), "--speed", "0", "--ifn", pcm_file, "--partials"]
    proc = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    assert b"".join(chunks).decode("utf-8").replace("\r\n", "\n") == LIVE  # the pty turns \n into \r\n
