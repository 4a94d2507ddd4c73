"""SessionDriver against a fake host, backend and peer: what reaches the sinks and the peer, and when."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from whisper_streaming.backends.base import Capacity, UtteranceJob, UtteranceResult
from whisper_streaming.core.results import FinalResult
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import AsrError, BackendUnavailableError, ErrorReason
from whisper_streaming.pipeline.commands import AudioChunk, BeginStream, FinishStream, Identify, SessionFailed, SetOptions
from whisper_streaming.pipeline.session import Session
from whisper_streaming.pipeline.vad import VadSegmenter
from whisper_streaming.runtime.driver import SessionDriver
from whisper_streaming.runtime.stats import RuntimeStats
from whisper_streaming.sinks.base import ResultPublished, SessionClosed, SessionInfo, StreamAudioReceived

pytestmark = pytest.mark.timeout(30)

LOUD = (np.sin(np.arange(480) / 3) * 9000).astype("<i2").tobytes()
QUIET = bytes(960)


class Backend:
    def __init__(self) -> None:
        self.futures: list[asyncio.Future[UtteranceResult]] = []
        self.cancelled: list[str] = []

    async def submit(self, key: str, job: UtteranceJob) -> asyncio.Future[UtteranceResult]:
        fut: asyncio.Future[UtteranceResult] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        return fut

    def cancel_session(self, key: str) -> None:
        self.cancelled.append(key)

    def capacity(self) -> Capacity:
        return Capacity(idle_slots=0, queue_depth=0, slots=1)


class Host:
    def __init__(self) -> None:
        self.backend = Backend()
        self.stats = RuntimeStats()
        self.events: list[object] = []
        self.sinks: list[object] = [self]  # the host records what a sink would get

    def publish(self, event: object) -> None:
        self.events.append(event)

    def result_delivered(self, info: SessionInfo, result: FinalResult) -> None:
        self.publish(ResultPublished(info, result))

    def room_for_speculation(self, session_key: object) -> bool:
        return False

    def status_text(self) -> str:
        return "status"

    def limited_status_text(self) -> str:
        return "limited"


class Peer:
    def __init__(self) -> None:
        self.outputs: list[object] = []

    def deliver(self, output: object) -> None:
        self.outputs.append(output)


def driver(host: Host, peer: Peer) -> SessionDriver:
    session = Session(segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=lambda frame, rate: any(frame)))
    d = SessionDriver(host, session, SessionInfo("c1", "tcp"), peer, logging.LoggerAdapter(logging.getLogger("t"), {}))  # type: ignore[arg-type]
    d.admitted = True
    return d


def transcript(text: str) -> UtteranceResult:
    return UtteranceResult(Transcript(text, "en", 1.0, (), 1.0))


async def one_utterance(d: SessionDriver) -> None:
    await d.handle(Identify("alice"))
    await d.handle(BeginStream())
    for chunk in [LOUD] * 20 + [QUIET] * 40:
        await d.handle(AudioChunk(chunk))


def test_the_sinks_know_who_it_is_once_identified_even_without_a_stream() -> None:
    async def run() -> None:
        host, peer = Host(), Peer()
        d = driver(host, peer)
        await d.handle(Identify("alice"))
        d.close()
        (end,) = [e for e in host.events if isinstance(e, SessionClosed)]
        assert end.session.user_id == "alice"

    asyncio.run(run())


def test_a_result_still_running_when_the_peer_leaves_reaches_the_sinks_before_the_session_end() -> None:
    async def run() -> None:
        host, peer = Host(), Peer()
        d = driver(host, peer)
        await one_utterance(d)
        (running,) = host.backend.futures
        d.close()  # the peer is gone; a worker still runs the utterance
        assert host.backend.cancelled == ["c1"]
        assert not any(isinstance(e, SessionClosed) for e in host.events)
        delivered = len(peer.outputs)
        running.set_result(transcript("late words"))
        await asyncio.sleep(0)
        kinds = [type(e).__name__ for e in host.events if isinstance(e, (ResultPublished, SessionClosed))]
        assert kinds == ["ResultPublished", "SessionClosed"]
        assert host.events[-1].results == 1  # type: ignore[attr-defined]
        assert len(peer.outputs) == delivered  # nothing written to a closed peer

    asyncio.run(run())


def test_a_late_failure_after_the_peer_left_is_not_counted_or_sent() -> None:
    async def run() -> None:
        host, peer = Host(), Peer()
        d = driver(host, peer)
        await one_utterance(d)
        (running,) = host.backend.futures
        d.close()
        running.set_exception(AsrError("worker died twice"))
        await asyncio.sleep(0)
        assert not host.stats.errors
        assert not any(isinstance(o, SessionFailed) for o in peer.outputs)
        assert isinstance(host.events[-1], SessionClosed)

    asyncio.run(run())


def test_a_failure_while_connected_is_counted_and_sent() -> None:
    async def run() -> None:
        host, peer = Host(), Peer()
        d = driver(host, peer)
        await one_utterance(d)
        host.backend.futures[0].set_exception(AsrError("worker died twice"))
        await asyncio.sleep(0)
        assert host.stats.errors["ASR_FAILED"] == 1
        assert isinstance(peer.outputs[-1], SessionFailed) and d.closing is not None
        await d.handle(FinishStream())  # closed: ignored

    asyncio.run(run())


def test_a_backend_that_cannot_reach_its_workers_ends_the_session_with_backend_unavailable() -> None:
    async def run() -> None:
        host, peer = Host(), Peer()
        d = driver(host, peer)
        await one_utterance(d)
        host.backend.futures[0].set_exception(BackendUnavailableError("redis unreachable for more than 5 s"))
        await asyncio.sleep(0)
        assert host.stats.errors["BACKEND_UNAVAILABLE"] == 1 and "ASR_FAILED" not in host.stats.errors
        last = peer.outputs[-1]
        assert isinstance(last, SessionFailed) and last.reason is ErrorReason.BACKEND_UNAVAILABLE

    asyncio.run(run())


def test_a_speculation_whose_text_ends_a_sentence_ends_the_utterance_sooner_and_is_claimed() -> None:
    """Semantic endpointing end to end in the driver: the speculation answers ``Done.`` during the
    pause; the next silent frames past ``sentence_end_silence_frames`` end the utterance, whose
    final result is the speculation's (no second decode)."""
    from whisper_streaming.pipeline.session import SessionOptions
    from whisper_streaming.pipeline.vad import VadOptions

    async def run() -> None:
        host, peer = Host(), Peer()
        host.room_for_speculation = lambda session_key: True  # type: ignore[method-assign]
        session = Session(SessionOptions(vad=VadOptions(sentence_end_silence_frames=8)),
                          segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=lambda frame, rate: any(frame)))
        d = SessionDriver(host, session, SessionInfo("c1", "tcp"), peer, logging.LoggerAdapter(logging.getLogger("t"), {}))  # type: ignore[arg-type]
        d.admitted = True
        await d.handle(Identify("alice"))
        await d.handle(BeginStream())
        for chunk in [LOUD] * 20 + [QUIET] * 7:  # 7 quiet 30 ms packets: the trailing audio is in, a speculation starts
            await d.handle(AudioChunk(chunk))
        (spec,) = host.backend.futures
        spec.set_result(transcript("Done."))
        await asyncio.sleep(0)
        await d.handle(AudioChunk(QUIET))  # the 8th silent frame: the utterance ends (16 without the sentence end)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(host.backend.futures) == 1  # claimed: no second decode
        results = [o for o in peer.outputs if isinstance(o, FinalResult)]
        assert [r.text for r in results] == ["Done."]

    asyncio.run(run())


@pytest.mark.parametrize("with_sinks", [True, False])
def test_audio_events_are_built_only_for_sinks(with_sinks: bool) -> None:
    async def run() -> None:
        host, peer = Host(), Peer()
        if not with_sinks:
            host.sinks = []
        d = driver(host, peer)
        await one_utterance(d)
        audio = [e for e in host.events if isinstance(e, StreamAudioReceived)]
        assert len(audio) == (60 if with_sinks else 0)

    asyncio.run(run())


def test_a_partial_decode_in_flight_is_withdrawn_when_its_utterance_ends() -> None:
    """A partial whose utterance reached its endpoint would be dropped (``Session.partial_done``):
    the driver cancels it, so a worker stops it after the encoder instead of decoding for nothing."""
    async def run() -> None:
        host, peer = Host(), Peer()
        host.room_for_partial = lambda: True  # type: ignore[attr-defined]
        d = driver(host, peer)
        await d.handle(Identify("alice"))
        await d.handle(SetOptions((("partials", "1"),)))
        await d.handle(BeginStream())
        soft = (np.sin(np.arange(480) / 3) * 900).astype("<i2").tobytes()  # speech varies in level (a steady tone is screened)
        for chunk in [LOUD, soft] * 20:  # 1.2 s of speech: the first partial is offered after 1 s
            await d.handle(AudioChunk(chunk))
        (partial,) = host.backend.futures
        assert not partial.done()
        for chunk in [QUIET] * 20:  # the endpoint: the final is submitted
            await d.handle(AudioChunk(chunk))
        assert len(host.backend.futures) == 2 and partial.cancelled()
        await asyncio.sleep(0)  # the partial's done-callback
        assert d.session.partials_dropped == 1 and d.session._partial_next == 0  # the next utterance's schedule is untouched
        host.backend.futures[1].set_result(transcript("hello"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [o.text for o in peer.outputs if isinstance(o, FinalResult)] == ["hello"]

    asyncio.run(run())


async def _stream_with_room_switch(host: Host, peer: Peer) -> tuple[SessionDriver, list[bool]]:
    """A driver with its stream begun, whose host has room for a speculation while ``room[0]``."""
    room = [False]
    host.room_for_speculation = lambda session_key: room[0]  # type: ignore[method-assign]
    d = driver(host, peer)
    await d.handle(Identify("alice"))
    await d.handle(BeginStream())
    return d, room


def test_a_speculation_offered_without_room_starts_once_an_engine_frees_up_before_the_endpoint() -> None:
    """No room at the offer (after 180 ms of trailing audio): the driver keeps the offer and
    submits it after a later packet finds room; the endpoint's Transcribe claims it."""

    async def run() -> None:
        host, peer = Host(), Peer()
        d, room = await _stream_with_room_switch(host, peer)
        for chunk in [LOUD] * 20 + [QUIET] * 8:  # the offer came after 6 quiet packets, with no room
            await d.handle(AudioChunk(chunk))
        assert host.backend.futures == [] and host.stats.speculations_started == 0
        room[0] = True  # an engine is idle now
        await d.handle(AudioChunk(QUIET))
        assert len(host.backend.futures) == 1 and host.stats.speculations_started == 1
        room[0] = False
        for _ in range(10):  # on to the endpoint (16 quiet frames): claimed, no second decode
            await d.handle(AudioChunk(QUIET))
        assert len(host.backend.futures) == 1 and host.stats.speculations_used == 1
        host.backend.futures[0].set_result(transcript("Hello."))
        await asyncio.sleep(0)
        assert [o.text for o in peer.outputs if isinstance(o, FinalResult)] == ["Hello."]

    asyncio.run(run())


def test_a_kept_offer_is_dropped_when_speech_resumes_or_the_endpoint_comes_first() -> None:
    """A kept offer that speech withdraws, or that the endpoint overtakes, is never submitted
    later: only confirmed utterances reach the backend."""

    async def run() -> None:
        host, peer = Host(), Peer()
        d, room = await _stream_with_room_switch(host, peer)
        for chunk in [LOUD] * 20 + [QUIET] * 8 + [LOUD] * 2:  # offered without room, then speech resumed
            await d.handle(AudioChunk(chunk))
        room[0] = True
        await d.handle(AudioChunk(LOUD))
        assert host.backend.futures == [] and host.stats.speculations_started == 0  # the withdrawn offer is gone
        room[0] = False
        for _ in range(20):  # the next offer (no room) and the endpoint: one confirmed utterance
            await d.handle(AudioChunk(QUIET))
        assert len(host.backend.futures) == 1
        room[0] = True
        for _ in range(5):
            await d.handle(AudioChunk(QUIET))
        assert len(host.backend.futures) == 1 and host.stats.speculations_started == 0  # nothing stale submitted

    asyncio.run(run())
