"""The doors (TCP V1.0, AudioSocket) in-process: a real :class:`Runtime`, real sockets on
loopback, the real session and WebRTC VAD on shipped speech files, and a fake ASR backend.

The fake backend turns every job into ``"job<i> bytes=<n>"`` (``i`` the submit order, ``n``
the job's PCM byte count) after a per-job delay, so the tests can tell which utterance a
result belongs to and make utterances finish out of order.  Expected utterances are computed
with a :class:`VadSegmenter` on the same audio (segmentation does not depend on chunking).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import numpy as np
import soundfile

from whisper_streaming.backends.base import AsrBackend, BackendStatus, Capacity, EngineState, UtteranceJob, UtteranceResult
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import AsrError, ErrorReason
from whisper_streaming.pipeline.vad import Utterance, VadOptions, VadSegmenter
from whisper_streaming.runtime.runtime import MIN_SINK_CLOSE_S, SINK_CLOSE_DEADLINE_S, Runtime, RuntimeOptions
from whisper_streaming.sinks.base import ResultPublished, SessionClosed, SinkEvent, StreamAudioReceived, StreamClosed, StreamOpened
from whisper_streaming.transports.audiosocket import AudioSocketOptions, AudioSocketTransport
from whisper_streaming.transports.tcp import TcpOptions, TcpTransport
from whisper_streaming.core import audio_format
from whisper_streaming.wire.audiosocket import AUDIO_KIND_RATES, audio_frames, hangup_frame, uuid_frame
from whisper_streaming.wire.protocol import (
    MAGIC,
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    Packet,
    PacketDecoder,
    Result,
    Role,
    Status,
    StatusRequest,
    UserId,
    Welcome,
    encode_packet,
)

pytestmark = pytest.mark.timeout(30)

DATA = Path(__file__).resolve().parents[2] / "data"
JFK = DATA / "jfk.wav"  # 16 kHz, 11 s: three utterances (two cut by silence, one at the end)
TEL = DATA / "tel" / "asterisk_core_en_tt-allbusy.wav"  # 8 kHz, 9 s
WAIT_S = 5.0
CHUNK_BYTES = 3200  # 100 ms at 16 kHz s16le


def load(path: Path) -> bytes:
    audio, _ = soundfile.read(str(path), dtype="int16")
    assert audio.ndim == 1
    return audio.astype("<i2").tobytes()


def expected_utterances(pcm: bytes, rate: int = 16000) -> list[Utterance]:
    segmenter = VadSegmenter(VadOptions(sample_rate_hz=rate))
    return segmenter.feed(pcm) + segmenter.flush()


JFK_PCM = load(JFK)
JFK_UTTERANCES = expected_utterances(JFK_PCM)


def test_fixture_audio_has_several_utterances() -> None:
    """The tests below rely on jfk.wav giving more than one utterance, some before the end."""
    assert len(JFK_UTTERANCES) == 3
    assert [u.end_reason.value for u in JFK_UTTERANCES] == ["silence", "silence", "flush"]


# --------------------------------------------------------------------------- fakes


class FakeBackend(AsrBackend):
    """Resolves each job to ``job<i> bytes=<n>`` after ``delays.get(i, delay_s)`` seconds.

    Its capacity shows no idle engine unless a test gives one, so nothing is speculated and
    ``jobs`` holds the confirmed utterances only."""

    def __init__(self, *, capacity: Capacity = Capacity(idle_slots=0, queue_depth=0, slots=2), delay_s: float = 0.0,
                 delays: Mapping[int, float] | None = None, annotations: Mapping[str, Any] | None = None) -> None:
        self.capacity_now = capacity
        self.delay_s = delay_s
        self.delays = dict(delays or {})
        self.annotations = dict(annotations or {})
        self.jobs: list[tuple[Hashable, UtteranceJob]] = []
        self.futures: list[asyncio.Future[UtteranceResult]] = []
        self.cancelled_sessions: list[Hashable] = []
        self.close_calls = 0
        self.pending_at_close: int | None = None
        self.capacity_calls = 0
        self.drain_calls = 0

    def drain_shortest_first(self) -> None:
        self.drain_calls += 1

    @staticmethod
    def text(i: int, job: UtteranceJob) -> str:
        return f"job{i} bytes={len(job.pcm)}"

    async def start(self) -> None:
        pass

    async def submit(self, session_key: Hashable, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        if self.close_calls:
            raise AsrError("closed")
        loop = asyncio.get_running_loop()
        i = len(self.jobs)
        self.jobs.append((session_key, job))
        transcript = Transcript(text=self.text(i, job), language="en", language_probability=1.0, segments=(),
                                audio_duration_s=len(job.pcm) / 2 / 16000)
        result = UtteranceResult(transcript, annotations=dict(self.annotations))
        future: asyncio.Future[UtteranceResult] = loop.create_future()
        self.futures.append(future)
        delay = self.delays.get(i, self.delay_s)
        if delay <= 0:
            future.set_result(result)
        else:
            loop.call_later(delay, lambda: future.done() or future.set_result(result))
        return future

    def cancel_session(self, session_key: Hashable) -> None:
        self.cancelled_sessions.append(session_key)
        for (key, _), future in zip(self.jobs, self.futures):
            if key == session_key and not future.done():
                future.cancel()

    def capacity(self) -> Capacity:
        self.capacity_calls += 1
        return self.capacity_now

    def status(self) -> BackendStatus:
        return BackendStatus(engines=(EngineState.IDLE, EngineState.BUSY), utterances_queued=7, worker_restarts=2,
                             utterances_done=len(self.jobs), utterances_failed=0)

    async def close(self) -> None:
        self.close_calls += 1
        if self.pending_at_close is None:
            self.pending_at_close = sum(not f.done() for f in self.futures)


@dataclass
class RecordingSink:
    events: list[SinkEvent] = field(default_factory=list)
    aclose_calls: list[float] = field(default_factory=list)
    events_at_aclose: int | None = None

    def publish(self, event: SinkEvent) -> None:
        self.events.append(event)

    async def aclose(self, deadline_s: float) -> None:
        self.aclose_calls.append(deadline_s)
        self.events_at_aclose = len(self.events)

    def of(self, kind: type, session_id: str | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (session_id is None or e.session.session_id == session_id)]


# --------------------------------------------------------------------------- harness


@dataclass
class Server:
    runtime: Runtime
    backend: FakeBackend
    tcp_port: int
    audiosocket_port: int | None


@asynccontextmanager
async def serving(backend: FakeBackend, *, sinks: tuple[Any, ...] = (), audiosocket: bool = False,
                  tcp_options: TcpOptions | None = None, audiosocket_options: AudioSocketOptions | None = None,
                  **runtime_kw: Any) -> AsyncIterator[Server]:
    runtime = Runtime(RuntimeOptions(**runtime_kw), backend, sinks=sinks)
    tcp = TcpTransport(runtime, tcp_options or TcpOptions(host="127.0.0.1", port=0))
    runtime.add_transport(tcp)
    asock = None
    if audiosocket:
        asock = AudioSocketTransport(runtime, audiosocket_options or AudioSocketOptions(host="127.0.0.1", port=0))
        runtime.add_transport(asock)
    await runtime.start()
    assert tcp.address is not None
    try:
        yield Server(runtime, backend, tcp.address[1], asock.address[1] if asock and asock.address else None)
    finally:
        if not runtime.stopping:
            await asyncio.wait_for(runtime.shutdown(), 15)


class Client:
    """A raw V1.0 client: writes encoded packets, decodes what the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = PacketDecoder(Role.CLIENT)
        self._ready: list[Packet] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, *, magic: bool = True) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if magic:
            client.write(MAGIC)
        return client

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, *packets: Packet) -> None:
        self.writer.write(b"".join(encode_packet(p) for p in packets))

    def send_audio(self, pcm: bytes, chunk: int = CHUNK_BYTES) -> None:
        self.send(*(Audio(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)))

    async def next(self, timeout_s: float = WAIT_S) -> Packet | None:
        """The next packet, None at EOF."""
        deadline = time.monotonic() + timeout_s
        while not self._ready:
            if self.eof:
                return None
            data = await asyncio.wait_for(self.reader.read(65536), max(deadline - time.monotonic(), 0.01))
            if not data:
                self.eof = True
                self.decoder.receive_eof()
            else:
                self.decoder.receive_data(data)
            self._ready += self.decoder.packets()
        return self._ready.pop(0)

    async def until(self, pred: Callable[[Packet], bool], timeout_s: float = WAIT_S) -> list[Packet]:
        """Packets up to and including the first matching ``pred`` (fails at EOF first)."""
        got: list[Packet] = []
        deadline = time.monotonic() + timeout_s
        while True:
            packet = await self.next(deadline - time.monotonic())
            assert packet is not None, f"EOF before the expected packet; got {got}"
            got.append(packet)
            if pred(packet):
                return got

    async def to_eof(self, timeout_s: float = WAIT_S) -> list[Packet]:
        got: list[Packet] = []
        deadline = time.monotonic() + timeout_s
        while (packet := await self.next(deadline - time.monotonic())) is not None:
            got.append(packet)
        return got

    async def hello(self, user: str = "alice") -> None:
        self.send(UserId(user))
        assert await self.next() == Welcome("Welcome!")

    def close(self) -> None:
        self.writer.close()


async def eventually(pred: Callable[[], bool], timeout_s: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def results(packets: list[Packet]) -> list[Result]:
    return [p for p in packets if isinstance(p, Result)]


def job_bytes(text: str) -> int:
    return int(text.rsplit("bytes=", 1)[1])


# --------------------------------------------------------------------------- 1. TCP stream


def test_tcp_stream_results_in_order_then_finished() -> None:
    # the first utterance finishes last: the session must still deliver in cut order
    backend = FakeBackend(delays={0: 0.4, 1: 0.0, 2: 0.05})

    async def main() -> None:
        async with serving(backend) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("alice")
            c.send(Begin())
            c.send_audio(JFK_PCM)
            c.send(Finish())
            got = await c.until(lambda p: isinstance(p, Finished))
            c.close()

            assert got[-1] == Finished()
            assert not any(isinstance(p, Error) for p in got), got
            rs = results(got)
            assert [r.text for r in rs] == [FakeBackend.text(i, job) for i, (_, job) in enumerate(backend.jobs)]
            assert [r.text.split()[0] for r in rs] == ["job0", "job1", "job2"]
            # each result carries its utterance's speech times (one decimal on the wire)
            assert [(r.start_s, r.end_s) for r in rs] == [(round(u.start_s, 1), round(u.end_s, 1)) for u in JFK_UTTERANCES]
            # the backend got 16 kHz s16le mono: exactly the utterances' samples
            assert len(backend.jobs) == len(JFK_UTTERANCES)
            for (key, job), u in zip(backend.jobs, JFK_UTTERANCES):
                assert key == "c1"
                assert job.pcm == u.samples.astype("<i2").tobytes()
            assert srv.runtime.stats.sessions_started == 1
            await eventually(lambda: srv.runtime.session_count == 0, what="session end")
            assert "c1" in backend.cancelled_sessions  # the driver released the session's queue

    asyncio.run(main())


def test_tcp_two_streams_on_one_connection() -> None:
    backend = FakeBackend()
    pcm = JFK_PCM[: 16000 * 2 * 5]  # first 5 s: one utterance cut by silence (+ maybe a flushed one)
    expected = expected_utterances(pcm)

    async def main() -> None:
        async with serving(backend) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()
            for _ in range(2):
                c.send(Begin())
                c.send_audio(pcm)
                c.send(Finish())
            first = await c.until(lambda p: isinstance(p, Finished))
            second = await c.until(lambda p: isinstance(p, Finished))
            c.close()
            assert len(results(first)) == len(results(second)) == len(expected) >= 1
            # result times restart at 0 with each stream
            assert [(r.start_s, r.end_s) for r in results(second)] == [(r.start_s, r.end_s) for r in results(first)]
            assert srv.runtime.session_count <= 1

    asyncio.run(main())


# --------------------------------------------------------------------------- 2. %C


def test_status_request_renders_runtime_and_backend_status() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, audiosocket=True, max_sessions=5) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()
            c.send(StatusRequest())
            status = await c.next()
            assert isinstance(status, Status), status
            lines = status.text.splitlines()
            assert lines[:2] == ["engine 0: idle", "engine 1: busy"]
            assert "sessions: 1/5" in lines
            assert "utterances queued: 7" in lines
            assert "worker restarts: 2" in lines
            assert "sessions total: 1" in lines
            assert "audiosocket calls: 0 (open 0)" in lines
            # a second session counts too
            c2 = await Client.connect(srv.tcp_port)
            await c2.hello("bob")
            c2.send(StatusRequest())
            status2 = await c2.next()
            assert isinstance(status2, Status)
            assert "sessions: 2/5" in status2.text.splitlines()
            c.close()
            c2.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- 3. admission


def test_second_session_over_max_sessions_is_refused_while_first_is_open() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend, max_sessions=1) as srv:
            first = await Client.connect(srv.tcp_port)
            await first.hello("first")

            second = await Client.connect(srv.tcp_port)
            second.send(UserId("second"))
            refused = await second.to_eof()
            second.close()
            assert refused == [Error("SERVER_TOO_BUSY")]
            assert srv.runtime.stats.sessions_rejected == 1
            assert srv.runtime.stats.errors["SERVER_TOO_BUSY"] == 1
            assert srv.runtime.stats.sessions_started == 1

            # the first session is unaffected
            first.send(StatusRequest())
            status = await first.next()
            assert isinstance(status, Status)
            assert "sessions: 1/1" in status.text.splitlines()
            assert "sessions rejected: 1" in status.text.splitlines()

            # once it is gone, a new session is admitted
            first.close()
            await eventually(lambda: srv.runtime.session_count == 0, what="first session closed")
            third = await Client.connect(srv.tcp_port)
            await third.hello("third")
            third.close()
            assert srv.runtime.stats.sessions_rejected == 1
            assert srv.runtime.stats.sessions_started == 2

    asyncio.run(main())


# --------------------------------------------------------------------------- 4. protocol errors


def test_protocol_error_ends_only_that_connection() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with serving(backend) as srv:
            good = await Client.connect(srv.tcp_port)
            await good.hello("good")

            audio_first = await Client.connect(srv.tcp_port)
            audio_first.send(UserId("bad"), Audio(b"\x00\x00" * 160))
            assert await audio_first.to_eof() == [Welcome("Welcome!"), Error("AUDIO_BEFORE_BEGIN")]
            audio_first.close()

            garbage = await Client.connect(srv.tcp_port)
            garbage.write(b"%x0000")
            assert await garbage.to_eof() == [Error("UNKNOWN_HEADER")]
            garbage.close()

            bad_length = await Client.connect(srv.tcp_port)
            bad_length.write(b"%uZZZZ")
            assert await bad_length.to_eof() == [Error("BAD_LENGTH")]
            bad_length.close()

            bad_magic = await Client.connect(srv.tcp_port, magic=False)
            bad_magic.write(b"HELLO_THERE_V1.0000000")
            assert await bad_magic.to_eof() == []  # closed without a reply
            bad_magic.close()

            stats = srv.runtime.stats
            assert stats.errors["AUDIO_BEFORE_BEGIN"] == 1
            assert stats.errors["UNKNOWN_HEADER"] == 1
            assert stats.errors["BAD_LENGTH"] == 1
            assert stats.handshake_failures == 1

            # the good connection still streams
            good.send(Begin())
            good.send_audio(JFK_PCM)
            good.send(Finish())
            got = await good.until(lambda p: isinstance(p, Finished))
            assert len(results(got)) == len(JFK_UTTERANCES)
            assert not any(isinstance(p, Error) for p in got)
            good.close()

    asyncio.run(main())


def test_protocol_error_mid_stream_drops_pending_work_of_that_session_only() -> None:
    backend = FakeBackend(delay_s=1.0)

    async def main() -> None:
        async with serving(backend) as srv:
            a = await Client.connect(srv.tcp_port)
            await a.hello("a")  # c1
            b = await Client.connect(srv.tcp_port)
            await b.hello("b")  # c2
            a.send(Begin())
            b.send(Begin())
            a.send_audio(JFK_PCM)
            b.send_audio(JFK_PCM)
            await eventually(lambda: [k for k, _ in backend.jobs].count("c2") == 2, what="b's utterances queued")
            b.send(Begin())  # ALREADY_STREAMING: b ends at once, its pending results are dropped
            got_b = await b.to_eof()
            b.close()
            assert got_b == [Error("ALREADY_STREAMING")]
            # the server lingers until the peer closes, then ends the session and drops its queue
            await eventually(lambda: "c2" in backend.cancelled_sessions, what="b's queue dropped")
            assert "c1" not in backend.cancelled_sessions
            b_futures = [f for (k, _), f in zip(backend.jobs, backend.futures) if k == "c2"]
            assert b_futures and all(f.cancelled() for f in b_futures)
            a.send(Finish())
            got_a = await a.until(lambda p: isinstance(p, Finished))
            a.close()
            assert len(results(got_a)) == len(JFK_UTTERANCES)
            assert not any(isinstance(p, Error) for p in got_a)

    asyncio.run(main())


# --------------------------------------------------------------------------- 5. sinks


def test_tcp_session_publishes_sink_events_in_order() -> None:
    backend = FakeBackend(delays={0: 0.2})
    sink = RecordingSink()

    async def main() -> None:
        async with serving(backend, sinks=(sink,)) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("alice")
            c.send(Begin())
            c.send_audio(JFK_PCM)
            c.send(Finish())
            got = await c.until(lambda p: isinstance(p, Finished))
            c.close()
            await eventually(lambda: sink.of(SessionClosed), what="SessionClosed")

            rs = results(got)
            events = sink.events
            kinds = [type(e) for e in events]
            assert kinds[0] is StreamOpened
            assert kinds[-1] is SessionClosed
            assert kinds.count(StreamOpened) == kinds.count(StreamClosed) == kinds.count(SessionClosed) == 1
            opened, closed = kinds.index(StreamOpened), kinds.index(StreamClosed)
            audio_at = [i for i, k in enumerate(kinds) if k is StreamAudioReceived]
            assert audio_at and opened < min(audio_at) and max(audio_at) < closed
            # StreamClosed marks the end of the stream's audio (at %f), not of its results: with the
            # first utterance still transcribing, every ResultPublished follows it; results only
            # have to come after StreamOpened and before SessionClosed.
            published = sink.of(ResultPublished)
            result_at = [i for i, k in enumerate(kinds) if k is ResultPublished]
            assert opened < min(result_at) and max(result_at) < len(kinds) - 1
            # what the sinks saw is what the peer got
            assert [e.result.text for e in published] == [r.text for r in rs]
            assert all(e.session.transport == "tcp" and e.session.session_id == "c1" for e in events)
            assert all(e.session.user_id == "alice" for e in events)
            assert events[opened].sample_rate_hz == 16000 and events[opened].stream_index == 0
            assert b"".join(e.pcm for e in sink.of(StreamAudioReceived)) == JFK_PCM
            end = events[-1]
            assert end.results == len(rs) == len(JFK_UTTERANCES)
            assert end.audio_s == pytest.approx(len(JFK_PCM) / 2 / 16000)
            assert end.reason == "peer closed"

    asyncio.run(main())


def test_audiosocket_call_publishes_results_with_call_id() -> None:
    backend = FakeBackend(delay_s=0.05)
    sink = RecordingSink()
    tel = load(TEL)
    pcm = tel + bytes(8000 * 2) + tel  # two prompts 1 s apart: one cut by silence, one at hangup
    expected = expected_utterances(pcm, 8000)
    call = uuid.uuid4()

    async def main() -> None:
        async with serving(backend, sinks=(sink,), audiosocket=True) as srv:
            assert srv.audiosocket_port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(uuid_frame(call) + b"".join(audio_frames(pcm, 8000, 20)) + hangup_frame())
            await eventually(lambda: sink.of(SessionClosed), what="SessionClosed")
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # nothing back; closed after the call
            writer.close()

            kinds = [type(e) for e in sink.events]
            assert kinds[0] is StreamOpened and kinds[-1] is SessionClosed
            opened = sink.events[0]
            assert opened.sample_rate_hz == 8000
            published = sink.of(ResultPublished)
            assert len(published) == len(expected) >= 2
            for e in published:
                assert e.session.call_id == str(call)
                assert e.session.transport == "audiosocket"
                assert e.session.user_id == str(call)
                assert e.session.session_id == "a1"
            assert [(e.result.start_s, e.result.end_s) for e in published] == [(u.start_s, u.end_s) for u in expected]
            # 8 kHz audio reached the backend resampled to 16 kHz (twice the bytes)
            assert len(backend.jobs) == len(expected)
            for (_, job), u in zip(backend.jobs, expected):
                assert abs(len(job.pcm) - 4 * len(u.samples)) <= 4
            assert [e.result.text for e in published] == [FakeBackend.text(i, j) for i, (_, j) in enumerate(backend.jobs)]
            assert b"".join(e.pcm for e in sink.of(StreamAudioReceived)) == pcm
            end = sink.events[-1]
            assert end.reason == "hangup"
            assert end.results == len(expected)
            assert end.session.call_id == str(call)

    asyncio.run(main())


# --------------------------------------------------------------------------- 6. graceful shutdown


def test_shutdown_delivers_pending_results_then_finished_then_closes() -> None:
    backend = FakeBackend(delay_s=0.3)
    sink = RecordingSink()

    async def main() -> None:
        async with serving(backend, sinks=(sink,)) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("alice")
            c.send(Begin())
            c.send_audio(JFK_PCM)  # no %f
            await eventually(lambda: sum(len(e.pcm) for e in sink.of(StreamAudioReceived)) == len(JFK_PCM), what="all audio")
            assert len(backend.jobs) == 2 and not any(f.done() for f in backend.futures)  # results still pending

            async def read_then_close() -> list[Packet]:
                got = await c.to_eof(10.0)
                c.close()  # the server lingers until the peer closes
                return got

            got, _ = await asyncio.gather(read_then_close(), asyncio.wait_for(srv.runtime.shutdown(), 15))

            assert got[-1:] == [Finished()], got
            rs = results(got)
            assert [r.text.split()[0] for r in rs] == ["job0", "job1", "job2"]  # the open stream was finished
            assert got == rs + [Finished()]
            assert backend.close_calls == 1
            assert backend.drain_calls == 1  # the backend was told to finish the shortest sessions first
            assert backend.pending_at_close == 0  # closed after every result was in
            assert sink.aclose_calls == [SINK_CLOSE_DEADLINE_S]
            assert sink.events_at_aclose == len(sink.events)  # nothing published after the sinks closed
            assert isinstance(sink.events[-1], SessionClosed) and sink.events[-1].reason == "server shutdown"
            assert sink.events[-1].results == 3
            await asyncio.wait_for(srv.runtime.wait_closed(), 1)
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", srv.tcp_port)
            await asyncio.wait_for(srv.runtime.shutdown(), 1)  # idempotent
            assert backend.close_calls == 1 and len(sink.aclose_calls) == 1

    asyncio.run(main())


def test_a_peer_that_keeps_sending_after_shutdown_gets_its_results_finished_then_shutting_down() -> None:
    backend = FakeBackend(delay_s=0.3)

    async def main() -> None:
        async with serving(backend) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("alice")
            c.send(Begin())
            c.send_audio(JFK_PCM)  # no %f
            await eventually(lambda: len(backend.jobs) == 2, what="the utterances queued")
            stop = asyncio.create_task(asyncio.wait_for(srv.runtime.shutdown(), 15))
            await asyncio.sleep(0.05)
            for _ in range(5):  # audio after the shutdown began: not transcribed
                c.send_audio(JFK_PCM[:9600])
                await asyncio.sleep(0.02)
            got = await c.to_eof(10.0)
            c.close()
            await stop
            assert got[-2:] == [Finished(), Error(ErrorReason.SHUTTING_DOWN.value)], got
            assert len(results(got)) == 3  # what came before the shutdown was transcribed
            assert len(backend.jobs) == 3  # and nothing after it

    asyncio.run(main())


def test_shutdown_finishes_an_open_audiosocket_call() -> None:
    backend = FakeBackend(delay_s=0.2)
    sink = RecordingSink()
    tel = load(TEL)
    call = uuid.uuid4()

    async def main() -> None:
        async with serving(backend, sinks=(sink,), audiosocket=True) as srv:
            assert srv.audiosocket_port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(uuid_frame(call) + b"".join(audio_frames(tel, 8000, 20)))  # no hangup
            await eventually(lambda: sum(len(e.pcm) for e in sink.of(StreamAudioReceived)) == len(tel), what="all audio")
            assert not sink.of(ResultPublished)
            await asyncio.wait_for(srv.runtime.shutdown(), 15)
            published = sink.of(ResultPublished)
            assert len(published) == 1 and published[0].session.call_id == str(call)
            assert isinstance(sink.events[-1], SessionClosed) and sink.events[-1].reason == "server shutdown"
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
            writer.close()
            assert backend.pending_at_close == 0

    asyncio.run(main())


# --------------------------------------------------------------------------- 7. speculation


@pytest.mark.parametrize(
    ("idle_engines", "idle_slots", "queue_depth", "held", "room"),
    [(1, 1, 0, 0, True), (1, 2, 0, 0, True), (1, 0, 0, 0, False), (1, 1, 1, 0, False),
     (1, 1, 2, 2, True),  # only a throttled session's work waits: it does not stop others' speculation
     (1, 1, 2, 1, False),
     (2, 2, 0, 0, True), (2, 3, 0, 0, True), (2, 1, 0, 0, False), (2, 0, 0, 0, False), (2, 2, 1, 0, False),
     (2, 2, 3, 3, True), (2, 2, 3, 2, False)],
)
def test_room_for_speculation_reads_backend_capacity(idle_engines: int, idle_slots: int, queue_depth: int, held: int,
                                                     room: bool) -> None:
    backend = FakeBackend(capacity=Capacity(idle_slots=idle_slots, queue_depth=queue_depth, slots=4, held=held))

    async def main() -> None:
        runtime = Runtime(RuntimeOptions(speculation_idle_engines=idle_engines), backend)
        calls = backend.capacity_calls
        assert runtime.room_for_speculation("s") is room
        assert backend.capacity_calls == calls + 1
        backend.capacity_now = Capacity(idle_slots=0 if room else 2, queue_depth=0, slots=4)
        assert runtime.room_for_speculation("s") is not room  # read at every call, not cached

    asyncio.run(main())


def test_no_room_for_a_speculation_the_backend_would_not_start_at_once() -> None:
    """The session's own state counts too: a backend that would queue this session's job (its
    reserve worker rule, or its throttle) gives no room for its speculation, only for others'."""
    backend = FakeBackend(capacity=Capacity(idle_slots=1, queue_depth=0, slots=2))
    backend.starts_at_once = lambda key: key != "busy"  # type: ignore[method-assign]

    async def main() -> None:
        runtime = Runtime(RuntimeOptions(), backend)
        assert runtime.room_for_speculation("other") is True
        assert runtime.room_for_speculation("busy") is False

    asyncio.run(main())


def test_speculation_takes_the_last_idle_engine_by_default() -> None:
    """``server.speculation_idle_engines`` defaults to 1: one idle engine is room enough."""
    backend = FakeBackend(capacity=Capacity(idle_slots=1, queue_depth=0, slots=2))

    async def main() -> None:
        assert Runtime(RuntimeOptions(), backend).room_for_speculation("s") is True

    asyncio.run(main())


@pytest.mark.parametrize(
    ("idle_slots", "partial_slots", "speculate", "partial"),
    [(1, 1, True, False),  # a worker busy with a partial counts as idle for a speculation, not for another partial
     (0, 2, False, False), (2, 0, True, True), (1, 0, False, False)],
)
def test_a_partial_never_stops_a_speculation_and_needs_two_really_idle_engines(idle_slots: int, partial_slots: int, speculate: bool,
                                                                              partial: bool) -> None:
    backend = FakeBackend(capacity=Capacity(idle_slots=idle_slots, queue_depth=0, slots=2, partial_slots=partial_slots))

    async def main() -> None:
        runtime = Runtime(RuntimeOptions(speculation_idle_engines=2), backend)
        assert runtime.room_for_speculation("s") is speculate
        assert runtime.room_for_partial() is partial

    asyncio.run(main())


@pytest.mark.parametrize(("idle_slots", "batch_slots", "queue_depth", "speculate"),
                         [(1, 1, 0, True), (0, 2, 0, False), (1, 0, 0, False), (1, 1, 1, False)])
def test_a_chunk_of_a_file_never_stops_a_speculation(idle_slots: int, batch_slots: int, queue_depth: int, speculate: bool) -> None:
    backend = FakeBackend(capacity=Capacity(idle_slots=idle_slots, queue_depth=queue_depth, slots=2, batch_slots=batch_slots))

    async def main() -> None:
        assert Runtime(RuntimeOptions(speculation_idle_engines=2), backend).room_for_speculation("s") is speculate

    asyncio.run(main())


@pytest.mark.parametrize(
    ("idle_slots", "queue_depth", "held", "ready", "partial"),
    [(0, 0, 0, True, True),  # a partial worker of its own: the finals' workers may all be busy
     (2, 0, 0, False, False),  # not ready (busy, loading, or held back while finals need the CPU)
     (2, 1, 0, True, False),  # a confirmed utterance waits
     (0, 1, 1, True, True)],  # only a throttled session's work waits
)
def test_a_partial_worker_of_its_own_decides_room_for_a_partial(idle_slots: int, queue_depth: int, held: int, ready: bool,
                                                                partial: bool) -> None:
    backend = FakeBackend(capacity=Capacity(idle_slots=idle_slots, queue_depth=queue_depth, slots=2, held=held,
                                            partial_workers=1, partial_worker_ready=ready))

    async def main() -> None:
        assert Runtime(RuntimeOptions(), backend).room_for_partial() is partial

    asyncio.run(main())


@pytest.mark.parametrize(("idle_slots", "idle_engines", "speculates"), [(0, 1, False), (1, 1, True), (1, 2, False), (2, 2, True)])
def test_speculation_follows_capacity_on_a_stream(idle_slots: int, idle_engines: int, speculates: bool) -> None:
    backend = FakeBackend(capacity=Capacity(idle_slots=idle_slots, queue_depth=0, slots=2))

    async def main() -> None:
        async with serving(backend, speculation_idle_engines=idle_engines) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello()
            c.send(Begin())
            c.send_audio(JFK_PCM)
            c.send(Finish())
            got = await c.until(lambda p: isinstance(p, Finished))
            c.close()
            stats = srv.runtime.stats
            rs = results(got)
            # the same utterances either way (a claimed speculation is the same audio)
            assert [job_bytes(r.text) for r in rs] == [2 * len(u.samples) for u in JFK_UTTERANCES]
            if speculates:
                assert stats.speculations_started >= 1
                assert stats.speculations_used >= 1
            else:
                assert stats.speculations_started == 0 and stats.speculations_used == 0
            # every confirmed utterance was submitted once, unless it claimed a speculation
            assert len(backend.jobs) == len(JFK_UTTERANCES) + stats.speculations_started - stats.speculations_used

    asyncio.run(main())


# --------------------------------------------------------------------------- every AudioSocket rate


@pytest.mark.parametrize("kind", sorted(AUDIO_KIND_RATES), ids=lambda k: f"0x{int(k):02x}")
def test_every_audiosocket_kind_is_transcribed(kind) -> None:
    """Asterisk may send any slin rate (kinds 0x10-0x18): each call's speech reaches the ASR."""
    rate = AUDIO_KIND_RATES[kind]
    backend = FakeBackend(delay_s=0.01)
    sink = RecordingSink()
    tel = load(TEL)
    pcm = audio_format.resample(np.frombuffer(tel, dtype="<i2"), 8000, rate).astype("<i2").tobytes()
    expected = expected_utterances(tel, 8000)

    async def main() -> None:
        async with serving(backend, sinks=(sink,), audiosocket=True) as srv:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(uuid_frame(uuid.uuid4()) + b"".join(audio_frames(pcm, rate, 20)) + hangup_frame())
            await eventually(lambda: sink.of(SessionClosed), what="SessionClosed")
            writer.close()
        end = sink.of(SessionClosed)[0]
        assert end.reason == "hangup" and end.results == len(sink.of(ResultPublished)) >= 1
        # the speech arrived at 16 kHz, about as long as the 8 kHz original's utterances
        spoken_s = sum(len(job.pcm) for _, job in backend.jobs) / 2 / 16000
        assert abs(spoken_s - sum(u.duration_s for u in expected)) < 0.5, (spoken_s, [u.duration_s for u in expected])
        assert not srv.runtime.stats.errors

    asyncio.run(main())



# --------------------------------------------------------------------------- held slots and status floods (issue 19)


def test_status_probes_are_answered_without_a_slot_even_when_every_slot_is_taken() -> None:
    async def main() -> None:
        async with serving(FakeBackend(), max_sessions=1) as srv:
            holder = await Client.connect(srv.tcp_port)
            await holder.hello("holder")
            probe = await Client.connect(srv.tcp_port)
            probe.send(StatusRequest())
            status = await probe.next()
            assert isinstance(status, Status) and "sessions: 1/1" in status.text.splitlines()
            assert srv.runtime.session_count == 1 and srv.runtime.stats.sessions_rejected == 0
            probe.send(UserId("late"))  # asking for a session is what is refused
            assert await probe.to_eof() == [Error("SERVER_TOO_BUSY")]
            probe.close()
            holder.close()

    asyncio.run(main())


def test_status_requests_do_not_keep_a_connection_alive() -> None:
    async def main() -> None:
        opts = TcpOptions(host="127.0.0.1", port=0, socket_timeout_s=0.6)
        async with serving(FakeBackend(), tcp_options=opts) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("idler")
            t0 = time.monotonic()

            async def poll() -> None:
                while True:
                    c.send(StatusRequest())
                    await asyncio.sleep(0.1)

            poller = asyncio.create_task(poll())
            try:
                got = await c.until(lambda p: isinstance(p, Error), timeout_s=3.0)
            finally:
                poller.cancel()
            assert got[-1] == Error("TIMEOUT")
            assert sum(isinstance(p, Status) for p in got) >= 3  # it was polling all along
            assert time.monotonic() - t0 < 1.5  # the idle timeout, not extended by %c
            c.close()

    asyncio.run(main())


def test_a_connection_that_never_identifies_is_closed_without_taking_a_slot() -> None:
    async def main() -> None:
        opts = TcpOptions(host="127.0.0.1", port=0, identify_timeout_s=0.3)
        async with serving(FakeBackend(), tcp_options=opts, max_sessions=1) as srv:
            silent = await Client.connect(srv.tcp_port)  # magic only, then nothing
            t0 = time.monotonic()
            assert await silent.to_eof() == [Error("TIMEOUT")]
            assert 0.25 < time.monotonic() - t0 < 2.0
            assert srv.runtime.stats.sessions_started == 0
            # meanwhile the only slot was free for a real client
            other = await Client.connect(srv.tcp_port)
            await other.hello("real")
            other.close()
            silent.close()

    asyncio.run(main())


def test_status_flood_is_throttled_for_the_flooder_alone_then_times_out() -> None:
    async def main() -> None:
        opts = TcpOptions(host="127.0.0.1", port=0, status_requests_per_s=2.0, status_burst=3, socket_timeout_s=1.0)
        async with serving(FakeBackend(), tcp_options=opts) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("flooder")
            builds = srv.runtime.status_builds
            t0 = time.monotonic()
            c.send(*([StatusRequest()] * 5000))  # one write of pipelined %c
            bystander = await Client.connect(srv.tcp_port)
            await bystander.hello("bystander")
            assert time.monotonic() - t0 < 0.5  # the flood does not stall other connections
            got = await c.to_eof(timeout_s=5.0)
            assert got[-1] == Error("TIMEOUT")  # only %c for socket_timeout_s: closed
            statuses = sum(isinstance(p, Status) for p in got)
            assert 3 <= statuses <= 3 + 2 * 1.5  # the burst, then 2/s for about a second; not 5000
            assert srv.runtime.status_builds - builds == statuses
            bystander.send(StatusRequest())
            assert isinstance(await bystander.next(), Status)  # its own allowance is untouched
            c.close()
            bystander.close()

    asyncio.run(main())


def test_per_ip_limit_is_enforced() -> None:
    async def main() -> None:
        async with serving(FakeBackend(), max_sessions=4, max_sessions_per_ip=3) as srv:
            clients = [await Client.connect(srv.tcp_port) for _ in range(4)]
            for i, c in enumerate(clients[:3]):
                await c.hello(f"u{i}")
            clients[3].send(UserId("u3"))
            assert await clients[3].to_eof() == [Error("TOO_MANY_CONNECTIONS")]
            for c in clients:
                c.close()

    asyncio.run(main())


def test_default_per_ip_limit_leaves_slots_for_other_hosts() -> None:
    from whisper_streaming.app.wiring import default_per_ip_limit, runtime_options_from_config
    from whisper_streaming.config.schema import parse_config

    assert default_per_ip_limit(16) == 12 and default_per_ip_limit(1) == 1 and default_per_ip_limit(2) == 1
    assert runtime_options_from_config(parse_config({})).max_sessions_per_ip == 12
    assert runtime_options_from_config(parse_config({"server": {"max_connections_per_ip": 0}})).max_sessions_per_ip == 0


def test_speculation_idle_engines_reaches_the_runtime() -> None:
    from whisper_streaming.app.wiring import runtime_options_from_config
    from whisper_streaming.config.schema import parse_config
    from whisper_streaming.errors import ConfigError

    assert runtime_options_from_config(parse_config({})).speculation_idle_engines == 1
    assert runtime_options_from_config(parse_config({"server": {"speculation_idle_engines": 2}})).speculation_idle_engines == 2
    with pytest.raises(ConfigError):
        parse_config({"server": {"speculation_idle_engines": 0}})


def test_an_audiosocket_connection_takes_no_slot_before_its_uuid() -> None:
    async def main() -> None:
        aopts = AudioSocketOptions(host="127.0.0.1", port=0, identify_timeout_s=0.3)
        async with serving(FakeBackend(), audiosocket=True, audiosocket_options=aopts, max_sessions=1) as srv:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            c = await Client.connect(srv.tcp_port)
            await c.hello("tcp")  # the silent AudioSocket connection holds no slot
            t0 = time.monotonic()
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # closed at the UUID deadline
            assert time.monotonic() - t0 < 2.0
            assert srv.runtime.stats.sessions_started == 1
            writer.close()
            c.close()

    asyncio.run(main())


def test_an_audiosocket_call_that_does_not_start_with_its_uuid_is_closed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving(FakeBackend(), audiosocket=True) as srv:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(b"".join(audio_frames(load(TEL)[:3200], 8000, 20)) + uuid_frame(uuid.uuid4()))
            try:
                assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
            except ConnectionError:
                pass  # closed with our bytes unread: a reset is fine
            writer.close()
            assert srv.runtime.stats.sessions_started == 0

    with caplog.at_level("INFO"):
        asyncio.run(main())
    assert any("malformed AudioSocket data (UUID_NOT_FIRST" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)  # no traceback


def test_a_decimal_length_server_serves_a_decimal_length_client() -> None:
    from whisper_streaming.client import AsyncStreamingClient

    async def main() -> None:
        opts = TcpOptions(host="127.0.0.1", port=0, length_encoding="decimal")
        async with serving(FakeBackend(), tcp_options=opts) as srv:
            raw = await Client.connect(srv.tcp_port)
            raw.write(b"%u0005alice")  # as the seed's examples write it
            data = await asyncio.wait_for(raw.reader.read(100), WAIT_S)
            assert data == b"%L0008Welcome!"
            raw.close()
            client = await AsyncStreamingClient.connect("127.0.0.1", srv.tcp_port, user_id="bob", length_encoding="decimal")
            await client.begin()
            await client.send_audio(JFK_PCM)  # split into packets of at most 9998 bytes
            results = await client.finish()
            await client.close()
            assert [(r.start_s, r.end_s) for r in results] == [(round(u.start_s, 1), round(u.end_s, 1)) for u in JFK_UTTERANCES]

    asyncio.run(main())



def test_an_audiosocket_call_longer_than_max_call_s_is_finished_and_ended() -> None:
    backend = FakeBackend(delay_s=0.01)
    sink = RecordingSink()
    tel = load(TEL)

    async def main() -> None:
        aopts = AudioSocketOptions(host="127.0.0.1", port=0, max_call_s=3.0)
        async with serving(backend, sinks=(sink,), audiosocket=True, audiosocket_options=aopts) as srv:
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(uuid_frame(uuid.uuid4()) + b"".join(audio_frames(tel * 3, 8000, 20)))  # 27 s, no hangup
            await eventually(lambda: sink.of(SessionClosed), what="SessionClosed")
            writer.close()
            assert srv.runtime.stats.errors["STREAM_TOO_LONG"] == 1
        end = sink.of(SessionClosed)[0]
        assert end.reason == "STREAM_TOO_LONG" and abs(end.audio_s - 3.0) < 0.05
        assert end.results == len(sink.of(ResultPublished)) >= 1  # what was said before the cap is delivered

    asyncio.run(main())


def test_sessions_still_owed_results_at_the_shutdown_deadline_are_told() -> None:
    backend = FakeBackend(delay_s=30.0)  # a backend that will not finish in time
    sink = RecordingSink()

    async def main() -> None:
        async with serving(backend, sinks=(sink,), shutdown_timeout_s=0.5) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("late")
            c.send(Begin())
            c.send_audio(JFK_PCM)
            await eventually(lambda: len(backend.jobs) >= 1, what="a job")
            t0 = time.monotonic()
            await srv.runtime.shutdown()
            assert time.monotonic() - t0 < 3.0
            got = await c.to_eof()
            assert got and got[-1] == Error("SHUTTING_DOWN")  # never silence
            assert srv.runtime.stats.errors["SHUTTING_DOWN"] == 1
            c.close()
        (end,) = sink.of(SessionClosed)
        assert end.reason == "SHUTTING_DOWN"

    asyncio.run(main())


def test_shutdown_timeout_bounds_the_whole_stop_and_the_cut_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """``shutdown_timeout_s`` bounds the whole stop: the doors cut their streams a quarter of it
    early (at most :data:`CLOSE_RESERVE_S`) and the sinks get what is left.  The connections cut
    at the deadline end normally: asyncio logs nothing (on Python 3.11 a door's handler task that
    ends cancelled is reported with a traceback)."""
    backend = FakeBackend(delay_s=30.0)  # nothing finishes in time
    sink = RecordingSink()
    tel = load(TEL)

    async def main() -> None:
        async with serving(backend, sinks=(sink,), audiosocket=True, shutdown_timeout_s=1.0) as srv:
            assert srv.audiosocket_port is not None
            c = await Client.connect(srv.tcp_port)
            await c.hello("late")
            c.send(Begin())
            c.send_audio(JFK_PCM)
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.audiosocket_port)
            writer.write(uuid_frame(uuid.uuid4()) + b"".join(audio_frames(tel, 8000, 20)))  # no hangup
            await eventually(lambda: len(backend.jobs) >= 2, what="the TCP session's jobs")
            await eventually(lambda: sum(len(e.pcm) for e in sink.of(StreamAudioReceived) if e.session.transport == "audiosocket") == len(tel),
                             what="the call's audio")
            t0 = time.monotonic()
            await srv.runtime.shutdown()
            took = time.monotonic() - t0
            assert 0.7 <= took <= 1.0 + 0.1, took  # cut at 0.75 s, done within shutdown_timeout_s
            assert len(sink.aclose_calls) == 1 and MIN_SINK_CLOSE_S <= sink.aclose_calls[0] <= 0.25
            assert (await c.to_eof())[-1:] == [Error("SHUTTING_DOWN")]
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
            c.close()
            writer.close()
        assert srv.runtime.stats.errors["SHUTTING_DOWN"] == 2
        assert sorted(e.reason for e in sink.of(SessionClosed)) == ["SHUTTING_DOWN", "SHUTTING_DOWN"]

    with caplog.at_level("WARNING"):
        asyncio.run(main())
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]



def test_tcp_sessions_post_to_the_webhook_like_calls() -> None:
    """The webhook is a sink of the runtime: a V1.0 session's results and its end are posted too."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from whisper_streaming.sinks.webhook import WebhookSink

    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    webhook = WebhookSink(f"http://127.0.0.1:{http.server_address[1]}/hook", trust_env=False)

    async def main() -> None:
        async with serving(FakeBackend(), sinks=(webhook,)) as srv:
            c = await Client.connect(srv.tcp_port)
            await c.hello("alice")
            c.send(Begin())
            c.send_audio(JFK_PCM)
            c.send(Finish())
            got = await c.until(lambda p: isinstance(p, Finished))
            c.close()
            await eventually(lambda: any(b["event"] == "session_end" for b in bodies), what="session_end posted")
        sent = [p.text for p in results(got)]
        posted = [b for b in bodies if b["event"] == "result"]
        assert [b["text"] for b in posted] == sent and len(sent) == len(JFK_UTTERANCES)
        assert all(b["session_id"] == "c1" and b["user_id"] == "alice" and b["stream_index"] == 0 for b in posted)
        assert bodies[-1] == {"event": "session_end", "session_id": "c1", "user_id": "alice", "results": len(sent),
                              "audio_s": round(len(JFK_PCM) / 32000, 2), "reason": "peer closed"}

    try:
        asyncio.run(main())
    finally:
        http.shutdown()
        http.server_close()
