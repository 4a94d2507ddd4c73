"""Unit tests of the sans-IO session state machine: packets in, actions out.

No sockets, no clock, no model: the segmenter is either a scripted fake (returning prepared
:class:`Utterance` objects) or the real :class:`VadSegmenter` with a fake ``is_speech``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_streaming.errors import RemoteProtocolError
from whisper_streaming.wire.protocol import (
    Audio,
    Begin,
    Error,
    Finish,
    Finished,
    Result,
    Status,
    StatusRequest,
    UserId,
    Welcome,
)
from whisper_streaming.pipeline.session import (
    CancelSpeculation,
    ends_sentence,
    Speculate,
    Close,
    Session,
    SessionOptions,
    SessionState,
    StatusRequested,
    StreamAudio,
    StreamEnded,
    StreamStarted,
    Transcribe,
)
from whisper_streaming.pipeline.vad import EndReason, Utterance, VadOptions, VadSegmenter
from whisper_streaming.wire.result_fields import sentiment_fields
from whisper_streaming.wire.tcp_session import Send, TcpSession

RATE = 16000
PCM = b"\x01\x00" * 480  # 480 samples


# ---------------------------------------------------------------------------- helpers


def utt(start_s: float, end_s: float, index: int = 0, rate: int = RATE) -> Utterance:
    """An utterance whose *speech* spans [start_s, end_s); its audio starts 0.3 s earlier."""
    speech_start = round(start_s * rate)
    speech_end = round(end_s * rate)
    audio_start = max(0, speech_start - round(0.3 * rate))
    samples = np.zeros(speech_end - audio_start, dtype=np.int16)
    samples.setflags(write=False)
    return Utterance(index, audio_start, speech_start, speech_end, samples, rate, EndReason.SILENCE)


@dataclass
class FakeSegmenter:
    """Scripted segmenter: ``cut`` is returned by the next :meth:`feed`, ``at_flush`` by :meth:`flush`."""

    options: VadOptions
    cut: list[Utterance] = field(default_factory=list)
    at_flush: list[Utterance] = field(default_factory=list)
    fed: list[bytes] = field(default_factory=list)
    flushed: bool = False
    tentative: Utterance | None = None  # what the session may speculate on after a feed

    def feed(self, pcm: bytes) -> list[Utterance]:
        assert not self.flushed, "feed after flush"
        self.fed.append(bytes(pcm))
        out, self.cut = self.cut, []
        return out

    def flush(self) -> list[Utterance]:
        assert not self.flushed, "flush twice"
        self.flushed = True
        return list(self.at_flush)


class Harness:
    """A session with a fake segmenter factory that remembers every segmenter it built."""

    def __init__(self, options: SessionOptions | None = None) -> None:
        self.segmenters: list[FakeSegmenter] = []
        self.session = TcpSession(Session(options, segmenter_factory=self._make))

    def _make(self, options: VadOptions) -> FakeSegmenter:
        seg = FakeSegmenter(options)
        self.segmenters.append(seg)
        return seg

    @property
    def seg(self) -> FakeSegmenter:
        return self.segmenters[-1]

    def rx(self, packet):
        return self.session.receive_packet(packet)

    def ready(self) -> Harness:
        assert self.rx(UserId("alice")) == [Send(Welcome("Welcome!"))]
        return self

    def streaming(self) -> Harness:
        self.ready()
        assert self.rx(Begin()) == [StreamStarted(self.session.stream_index, "alice", self.session.stream_options.sample_rate)]
        return self

    def cut(self, *utterances: Utterance, pcm: bytes = PCM) -> list[Transcribe]:
        """Feed audio so the segmenter cuts ``utterances``; return the Transcribe actions."""
        self.seg.cut = list(utterances)
        actions = self.rx(Audio(pcm))
        assert actions[0] == StreamAudio(pcm)
        transcribes = actions[1:]
        assert all(isinstance(a, Transcribe) for a in transcribes)
        assert [t.utterance for t in transcribes] == list(utterances)
        return transcribes


def assert_transcribe(action, utterance: Utterance, stream_index: int) -> None:
    assert isinstance(action, Transcribe)
    assert action.utterance is utterance
    assert action.stream_index == stream_index


def assert_error(actions, reason: str) -> None:
    assert len(actions) == 2, actions
    assert actions[0] == Send(Error(reason))
    assert isinstance(actions[1], Close)
    assert actions[1].reason.startswith(reason)


ALL_CLIENT_PACKETS = [UserId("bob"), Begin(), Audio(PCM), Finish(), StatusRequest()]


def assert_dead(session: Session) -> None:
    assert session.state is SessionState.CLOSED
    for packet in ALL_CLIENT_PACKETS:
        assert session.receive_packet(packet) == []
    assert session.state is SessionState.CLOSED
    assert session.shutdown() == []


# ---------------------------------------------------------------------------- happy path


def test_initial_state() -> None:
    s = TcpSession(Session(segmenter_factory=FakeSegmenter))
    assert s.state is SessionState.AWAIT_USER
    assert s.user_id is None
    assert s.pending_transcriptions == 0
    assert (s.audio_samples, s.utterances, s.results_sent) == (0, 0, 0)
    assert s.close_reason is None


def test_user_gets_welcome() -> None:
    h = Harness()
    assert h.rx(UserId("alice")) == [Send(Welcome("Welcome!"))]
    assert h.session.state is SessionState.READY
    assert h.session.user_id == "alice"
    assert h.segmenters == []  # no stream yet


def test_custom_welcome_message() -> None:
    h = Harness(SessionOptions(welcome_message="Hi there"))
    assert h.rx(UserId("alice")) == [Send(Welcome("Hi there"))]


def test_begin_starts_stream_with_session_vad_options() -> None:
    vad = VadOptions(silence_frames=5)
    h = Harness(SessionOptions(vad=vad)).ready()
    assert h.rx(Begin()) == [StreamStarted(0, "alice")]
    assert h.session.state is SessionState.STREAMING
    assert h.session.stream_index == 0
    assert len(h.segmenters) == 1
    assert h.seg.options is vad


def test_audio_without_cut_only_streams_audio() -> None:
    h = Harness().streaming()
    assert h.rx(Audio(PCM)) == [StreamAudio(PCM)]
    assert h.seg.fed == [PCM]
    assert h.session.pending_transcriptions == 0


def test_audio_with_cut_transcribes_utterance() -> None:
    h = Harness().streaming()
    u = utt(1.0, 2.5)
    h.seg.cut = [u]
    actions = h.rx(Audio(PCM))
    assert len(actions) == 2
    assert actions[0] == StreamAudio(PCM)
    assert_transcribe(actions[1], u, 0)
    assert h.session.pending_transcriptions == 1
    assert h.session.utterances == 1


def test_two_utterances_in_one_feed_get_distinct_tickets_in_order() -> None:
    h = Harness().streaming()
    u0, u1 = utt(0.5, 1.0), utt(1.5, 2.0, index=1)
    t0, t1 = h.cut(u0, u1)
    assert t0.ticket != t1.ticket
    assert h.session.pending_transcriptions == 2


def test_transcription_done_sends_result_with_speech_times() -> None:
    h = Harness().streaming()
    u = utt(1.25, 3.5)
    assert u.audio_start_s != u.start_s  # the result must use speech start, not audio start
    (t,) = h.cut(u)
    assert h.session.transcription_done(t.ticket, "  hello world \n") == [Send(Result(1.25, 3.5, "hello world"))]
    assert h.session.pending_transcriptions == 0
    assert h.session.results_sent == 1
    assert h.session.state is SessionState.STREAMING
    # A duplicate / unknown completion does nothing.
    assert h.session.transcription_done(t.ticket, "again") == []
    assert h.session.transcription_done(999, "never issued") == []


def test_finish_transcribes_flushed_utterances_then_finished() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.5))
    u1 = utt(2.0, 2.75, index=1)
    h.seg.at_flush = [u1]
    actions = h.rx(Finish())
    assert len(actions) == 2
    assert_transcribe(actions[0], u1, 0)
    assert actions[1] == StreamEnded(0)
    t1 = actions[0]
    assert h.seg.flushed
    assert h.session.state is SessionState.READY  # %b may be pipelined already
    assert h.session.transcription_done(t0.ticket, "one") == [Send(Result(0.5, 1.5, "one"))]
    assert h.session.transcription_done(t1.ticket, "two") == [Send(Result(2.0, 2.75, "two")), Send(Finished())]
    assert h.session.state is SessionState.READY
    assert h.session.pending_transcriptions == 0


def test_finish_with_nothing_pending_sends_finished_at_once() -> None:
    h = Harness().streaming()
    assert h.rx(Audio(PCM)) == [StreamAudio(PCM)]
    assert h.rx(Finish()) == [StreamEnded(0), Send(Finished())]
    assert h.session.state is SessionState.READY


def test_second_stream_has_index_one_and_fresh_segmenter() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.session.transcription_done(t0.ticket, "first") == [Send(Result(0.5, 1.0, "first"))]
    assert h.rx(Finish()) == [StreamEnded(0), Send(Finished())]
    first = h.seg
    assert h.rx(Begin()) == [StreamStarted(1, "alice")]
    assert h.session.state is SessionState.STREAMING
    assert len(h.segmenters) == 2 and h.seg is not first
    u = utt(0.25, 0.75)  # times restart with the new stream's segmenter
    (t1,) = h.cut(u)
    assert_transcribe(t1, u, 1)
    assert t1.ticket != t0.ticket
    assert h.session.transcription_done(t1.ticket, "second") == [Send(Result(0.25, 0.75, "second"))]
    assert h.rx(Finish()) == [StreamEnded(1), Send(Finished())]
    assert first.fed == [PCM] and h.seg.fed == [PCM]


def speech_pcm(voiced_frames: int, silent_frames_before: int = 0, silent_frames_after: int = 0, fs: int = 480) -> bytes:
    samples = np.concatenate(
        [
            np.zeros(silent_frames_before * fs, dtype="<i2"),
            np.resize(np.array([1000, -1000], dtype="<i2"), voiced_frames * fs),  # a constant would be digital silence
            np.zeros(silent_frames_after * fs, dtype="<i2"),
        ]
    )
    return samples.tobytes()


def real_vad_session() -> Session:
    def is_speech(frame: bytes, rate: int) -> bool:
        assert rate == RATE
        return bool(np.frombuffer(frame, dtype=np.int16).any())

    return TcpSession(Session(segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=is_speech)))


def test_real_vad_segmenter_with_fake_is_speech() -> None:
    s = real_vad_session()
    assert s.receive_packet(UserId("alice")) == [Send(Welcome("Welcome!"))]
    assert s.receive_packet(Begin()) == [StreamStarted(0, "alice")]
    # 32 silent frames (0.96 s), 33 voiced frames (0.99 s), then 16 silent frames end it.
    pcm = speech_pcm(33, silent_frames_before=32)
    assert s.receive_packet(Audio(pcm)) == [StreamAudio(pcm)]
    tail = speech_pcm(0, silent_frames_after=16)
    actions = s.receive_packet(Audio(tail))
    assert len(actions) == 2 and actions[0] == StreamAudio(tail)
    t = actions[1]
    assert isinstance(t, Transcribe) and t.stream_index == 0
    assert t.utterance.speech_start_sample == 32 * 480
    assert s.transcription_done(t.ticket, "speech") == [Send(Result(0.96, 1.95, "speech"))]
    # A second utterance still in progress at %f is flushed and transcribed.
    pcm2 = speech_pcm(20, silent_frames_before=4)
    assert s.receive_packet(Audio(pcm2)) == [StreamAudio(pcm2)]
    actions = s.receive_packet(Finish())
    assert len(actions) == 2 and actions[1] == StreamEnded(0)
    t2 = actions[0]
    assert isinstance(t2, Transcribe) and t2.utterance.end_reason is EndReason.FLUSH
    start = (32 + 33 + 16 + 4) * 480 / RATE
    assert s.transcription_done(t2.ticket, "more") == [Send(Result(start, start + 20 * 480 / RATE, "more")), Send(Finished())]
    assert s.audio_samples == (len(pcm) + len(tail) + len(pcm2)) // 2
    assert s.utterances == 2 and s.results_sent == 2


# ---------------------------------------------------------------------------- ordering


def test_second_utterance_finishing_first_waits_for_the_first() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    (t1,) = h.cut(utt(2.0, 3.0, index=1))
    assert h.session.transcription_done(t1.ticket, "second") == []
    assert h.session.results_sent == 0
    assert h.session.transcription_done(t0.ticket, "first") == [
        Send(Result(0.5, 1.0, "first")),
        Send(Result(2.0, 3.0, "second")),
    ]
    assert h.session.results_sent == 2


def test_finished_only_after_every_result_of_its_stream() -> None:
    h = Harness().streaming()
    t0, t1 = h.cut(utt(0.5, 1.0), utt(2.0, 3.0, index=1))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.session.transcription_done(t1.ticket, "b") == []
    assert h.session.transcription_done(t0.ticket, "a") == [
        Send(Result(0.5, 1.0, "a")),
        Send(Result(2.0, 3.0, "b")),
        Send(Finished()),
    ]


@pytest.mark.parametrize("second_stream_first", [True, False])
def test_pipelined_finish_begin_keeps_streams_in_order(second_stream_first: bool) -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.rx(Begin()) == [StreamStarted(1, "alice")]  # pipelined before %F
    (t1,) = h.cut(utt(0.25, 0.5))
    assert t1.stream_index == 1
    assert h.rx(Finish()) == [StreamEnded(1)]
    if second_stream_first:
        assert h.session.transcription_done(t1.ticket, "two") == []
        assert h.session.transcription_done(t0.ticket, "one") == [
            Send(Result(0.5, 1.0, "one")),
            Send(Finished()),
            Send(Result(0.25, 0.5, "two")),
            Send(Finished()),
        ]
    else:
        assert h.session.transcription_done(t0.ticket, "one") == [Send(Result(0.5, 1.0, "one")), Send(Finished())]
        assert h.session.transcription_done(t1.ticket, "two") == [Send(Result(0.25, 0.5, "two")), Send(Finished())]
    assert h.session.state is SessionState.READY


def test_welcome_is_not_held_back() -> None:
    # Nothing is pending before %u, so the welcome goes at once; a status request is answered
    # out of band (the transport builds %C) and does not wait behind pending results.
    h = Harness().streaming()
    h.cut(utt(0.5, 1.0))
    assert h.rx(StatusRequest()) == [StatusRequested()]


@settings(max_examples=200, deadline=None)
@given(
    per_stream=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=4),
    data=st.data(),
)
def test_any_completion_order_yields_cut_order(per_stream: list[int], data: st.DataObject) -> None:
    """Results leave in cut order with one %F after each stream, whatever the completion order."""
    h = Harness().ready()
    tickets: list[tuple[int, str]] = []
    expected: list = []
    out: list = []
    for stream, n in enumerate(per_stream):
        assert h.rx(Begin()) == [StreamStarted(stream, "alice")]
        for i in range(n):
            u = utt(float(i), i + 0.5, index=i)
            (t,) = h.cut(u)
            text = f"s{stream}u{i}"
            empty = data.draw(st.booleans(), label=f"empty {text}")
            tickets.append((t.ticket, "" if empty else text))
            if not empty:
                expected.append(Send(Result(float(i), i + 0.5, text)))
        ended = h.rx(Finish())
        assert ended[0] == StreamEnded(stream)
        expected.append(Send(Finished()))
        out.extend(ended[1:])  # sent at once only while nothing is pending
    order = data.draw(st.permutations(tickets), label="completion order")
    for ticket, text in order:
        out.extend(h.session.transcription_done(ticket, text))
    assert out == expected
    assert h.session.pending_transcriptions == 0
    assert h.session.results_sent == sum(isinstance(a.packet, Result) for a in expected)


# ---------------------------------------------------------------------------- empty text


def test_empty_text_sends_no_result_but_releases_the_slot() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.session.transcription_done(t0.ticket, "  \n") == [Send(Finished())]
    assert h.session.results_sent == 0
    assert h.session.pending_transcriptions == 0


def test_empty_first_result_releases_the_next() -> None:
    h = Harness().streaming()
    t0, t1 = h.cut(utt(0.5, 1.0), utt(2.0, 3.0, index=1))
    assert h.session.transcription_done(t1.ticket, "kept") == []
    assert h.session.transcription_done(t0.ticket, "") == [Send(Result(2.0, 3.0, "kept"))]
    assert h.session.results_sent == 1


# ---------------------------------------------------------------------------- errors


def _fresh() -> Harness:
    return Harness()


def _ready() -> Harness:
    return Harness().ready()


def _streaming() -> Harness:
    return Harness().streaming()


def _after_stream() -> Harness:
    h = Harness().streaming()
    assert h.rx(Finish()) == [StreamEnded(0), Send(Finished())]
    return h


ERROR_CASES = [
    pytest.param(_fresh, lambda h: h.rx(Begin()), "BEGIN_BEFORE_USER", id="begin-before-user"),
    pytest.param(_fresh, lambda h: h.rx(Audio(PCM)), "AUDIO_BEFORE_BEGIN", id="audio-before-user"),
    pytest.param(_ready, lambda h: h.rx(Audio(PCM)), "AUDIO_BEFORE_BEGIN", id="audio-before-begin"),
    pytest.param(_after_stream, lambda h: h.rx(Audio(PCM)), "AUDIO_BEFORE_BEGIN", id="audio-after-finish"),
    pytest.param(_ready, lambda h: h.rx(UserId("alice")), "DUPLICATE_USER", id="second-user"),
    pytest.param(_streaming, lambda h: h.rx(UserId("eve")), "DUPLICATE_USER", id="second-user-streaming"),
    pytest.param(_fresh, lambda h: h.rx(Finish()), "FINISH_BEFORE_BEGIN", id="finish-before-user"),
    pytest.param(_ready, lambda h: h.rx(Finish()), "FINISH_BEFORE_BEGIN", id="finish-without-begin"),
    pytest.param(_after_stream, lambda h: h.rx(Finish()), "FINISH_BEFORE_BEGIN", id="finish-twice"),
    pytest.param(_streaming, lambda h: h.rx(Begin()), "ALREADY_STREAMING", id="begin-while-streaming"),
    pytest.param(_ready, lambda h: h.rx(Welcome("x")), "UNEXPECTED_PACKET", id="server-packet"),
    pytest.param(_fresh, lambda h: h.session.protocol_error(RemoteProtocolError("BAD_LENGTH", "junk")), "BAD_LENGTH", id="protocol-error-fresh"),
    pytest.param(_streaming, lambda h: h.session.protocol_error(RemoteProtocolError("BAD_LENGTH", "junk")), "BAD_LENGTH", id="protocol-error-streaming"),
    pytest.param(_ready, lambda h: h.session.timeout(), "TIMEOUT", id="timeout"),
    pytest.param(_streaming, lambda h: h.session.timeout(), "TIMEOUT", id="timeout-streaming"),
]


@pytest.mark.parametrize(("setup", "trigger", "reason"), ERROR_CASES)
def test_errors_send_error_then_close(setup, trigger, reason: str) -> None:
    h = setup()
    actions = trigger(h)
    assert_error(actions, reason)
    assert h.session.close_reason == actions[1].reason
    assert_dead(h.session)


def test_protocol_error_passes_reason_and_detail() -> None:
    h = Harness().ready()
    actions = h.session.protocol_error(RemoteProtocolError("BAD_LENGTH", "length field 0x7a7a7a7a"))
    assert actions == [Send(Error("BAD_LENGTH")), Close("BAD_LENGTH: length field 0x7a7a7a7a")]
    assert h.session.close_reason == "BAD_LENGTH: length field 0x7a7a7a7a"


def test_protocol_error_without_detail() -> None:
    h = Harness()
    assert h.session.protocol_error(RemoteProtocolError("UNKNOWN_HEADER")) == [Send(Error("UNKNOWN_HEADER")), Close("UNKNOWN_HEADER")]


def test_transcription_failed_closes_with_asr_failed() -> None:
    h = Harness().streaming()
    t0, t1 = h.cut(utt(0.5, 1.0), utt(2.0, 3.0, index=1))
    assert h.session.transcription_done(t1.ticket, "never sent") == []
    actions = h.session.transcription_failed(t0.ticket)
    assert_error(actions, "ASR_FAILED")
    assert h.session.results_sent == 0
    assert h.session.pending_transcriptions == 0
    assert_dead(h.session)


def test_transcription_failed_custom_reason() -> None:
    h = Harness().streaming()
    (t,) = h.cut(utt(0.5, 1.0))
    assert_error(h.session.transcription_failed(t.ticket, "SERVER_TOO_BUSY"), "SERVER_TOO_BUSY")


def test_transcription_failed_unknown_ticket_is_ignored() -> None:
    h = Harness().streaming()
    (t,) = h.cut(utt(0.5, 1.0))
    assert h.session.transcription_failed(t.ticket + 100) == []
    assert h.session.state is SessionState.STREAMING
    assert h.session.transcription_done(t.ticket, "fine") == [Send(Result(0.5, 1.0, "fine"))]
    assert h.session.transcription_failed(t.ticket) == []  # already done
    assert h.session.state is SessionState.STREAMING


def test_results_after_close_are_dropped() -> None:
    h = Harness().streaming()
    t0, t1 = h.cut(utt(0.5, 1.0), utt(2.0, 3.0, index=1))
    assert_error(h.session.timeout(), "TIMEOUT")
    assert h.session.pending_transcriptions == 0
    assert h.session.transcription_done(t0.ticket, "late") == []
    assert h.session.transcription_failed(t1.ticket) == []
    assert h.session.results_sent == 0
    assert_dead(h.session)


@pytest.mark.parametrize("late", ["timeout", "protocol_error"])
def test_timeout_or_protocol_error_after_close_do_nothing(late: str) -> None:
    h = Harness().ready()
    first = h.rx(Finish())
    assert_error(first, "FINISH_BEFORE_BEGIN")
    if late == "timeout":
        assert h.session.timeout() == []
    else:
        assert h.session.protocol_error(RemoteProtocolError("BAD_LENGTH")) == []
    assert h.session.close_reason == first[1].reason


# ---------------------------------------------------------------------------- status


@pytest.mark.parametrize("setup", [_fresh, _ready, _streaming, _after_stream], ids=["fresh", "ready", "streaming", "after-stream"])
def test_status_request_any_time_leaves_state_unchanged(setup) -> None:
    h = setup()
    before = (h.session.state, h.session.stream_index, h.session.user_id, h.session.pending_transcriptions)
    assert h.rx(StatusRequest()) == [StatusRequested()]
    assert h.rx(StatusRequest()) == [StatusRequested()]
    after = (h.session.state, h.session.stream_index, h.session.user_id, h.session.pending_transcriptions)
    assert after == before


def test_status_request_before_user_then_normal_flow() -> None:
    h = Harness()
    assert h.rx(StatusRequest()) == [StatusRequested()]
    assert h.session.state is SessionState.AWAIT_USER
    h.ready()
    assert h.rx(Begin()) == [StreamStarted(0, "alice")]


def test_status_request_does_not_disturb_pending_results() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.rx(StatusRequest()) == [StatusRequested()]
    assert h.session.transcription_done(t0.ticket, "x") == [Send(Result(0.5, 1.0, "x")), Send(Finished())]


# ---------------------------------------------------------------------------- shutdown


def test_shutdown_while_streaming_finishes_stream_then_closes() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    u1 = utt(2.0, 2.5, index=1)
    h.seg.at_flush = [u1]
    actions = h.session.shutdown()
    assert len(actions) == 2
    assert_transcribe(actions[0], u1, 0)
    assert actions[1] == StreamEnded(0)
    t1 = actions[0]
    assert h.seg.flushed
    assert h.session.state is not SessionState.CLOSED
    assert h.session.transcription_done(t1.ticket, "two") == []
    assert h.session.transcription_done(t0.ticket, "one") == [
        Send(Result(0.5, 1.0, "one")),
        Send(Result(2.0, 2.5, "two")),
        Send(Finished()),
        Close("server shutdown"),
    ]
    assert h.session.close_reason == "server shutdown"
    assert_dead(h.session)


def test_shutdown_while_streaming_with_nothing_pending() -> None:
    h = Harness().streaming()
    assert h.session.shutdown("peer closed") == [StreamEnded(0), Send(Finished()), Close("peer closed")]
    assert h.session.close_reason == "peer closed"
    assert_dead(h.session)


def test_shutdown_waits_for_a_pipelined_stream() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.session.shutdown() == []  # READY, but a result is still owed
    assert h.session.state is not SessionState.CLOSED
    assert h.session.transcription_done(t0.ticket, "") == [Send(Finished()), Close("server shutdown")]
    assert_dead(h.session)


def test_shutdown_then_failure_closes_with_error() -> None:
    h = Harness().streaming()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.session.shutdown() == [StreamEnded(0)]
    assert_error(h.session.transcription_failed(t0.ticket), "ASR_FAILED")
    assert_dead(h.session)


@pytest.mark.parametrize("setup", [_fresh, _ready, _after_stream], ids=["fresh", "ready", "after-stream"])
def test_shutdown_when_idle_closes_at_once(setup) -> None:
    h = setup()
    assert h.session.shutdown() == [Close("server shutdown")]
    assert h.session.close_reason == "server shutdown"
    assert_dead(h.session)


def test_shutdown_with_empty_reason_still_closes() -> None:
    h = Harness().ready()
    assert h.session.shutdown("") == [Close("")]
    assert h.session.state is SessionState.CLOSED


# ---------------------------------------------------------------------------- statistics


def test_statistics() -> None:
    h = Harness().streaming()
    h.cut(pcm=b"\x00\x00" * 8000)
    t0, t1 = h.cut(utt(0.1, 0.4), utt(0.6, 0.9, index=1), pcm=b"\x00\x00" * 4000)
    u2 = utt(1.0, 1.2, index=2)
    h.seg.at_flush = [u2]
    t2, _ = h.rx(Finish())
    assert h.session.audio_samples == 12000
    assert h.session.audio_s == pytest.approx(0.75)
    assert h.session.utterances == 3
    assert h.session.results_sent == 0
    h.session.transcription_done(t0.ticket, "a")
    h.session.transcription_done(t1.ticket, "")
    h.session.transcription_done(t2.ticket, "c")
    assert h.session.results_sent == 2
    # Counters accumulate over streams.
    assert h.rx(Begin()) == [StreamStarted(1, "alice")]
    h.cut(pcm=b"\x00\x00" * 16000)
    assert h.session.audio_samples == 28000
    assert h.session.audio_s == pytest.approx(1.75)


def test_audio_s_uses_configured_sample_rate() -> None:
    h = Harness(SessionOptions(vad=VadOptions(sample_rate_hz=8000), stream_defaults=StreamOptions(sample_rate=8000))).streaming()
    h.cut(pcm=b"\x00\x00" * 4000)
    assert h.session.audio_samples == 4000
    assert h.session.audio_s == pytest.approx(0.5)


def test_status_packet_is_not_a_client_packet() -> None:
    h = Harness().ready()
    assert_error(h.rx(Status("x")), "UNEXPECTED_PACKET")


def test_max_stream_duration_finishes_then_errors() -> None:
    h = Harness(SessionOptions(max_stream_samples=1000)).streaming()
    assert h.rx(Audio(b"\x00\x00" * 600))[0] == StreamAudio(b"\x00\x00" * 600)
    h.seg.at_flush = [utt(0.0, 0.05)]
    actions = h.rx(Audio(b"\x01\x00" * 600))  # crosses the limit: only 400 samples are kept
    assert actions[0] == StreamAudio(b"\x01\x00" * 400)
    assert h.seg.fed[-1] == b"\x01\x00" * 400 and h.seg.flushed
    (transcribe,) = [a for a in actions if isinstance(a, Transcribe)]
    assert not any(isinstance(a, (Send, Close)) for a in actions)  # the result is still owed
    assert h.rx(Audio(b"\x00\x00")) == []  # input after the limit is ignored
    done = h.session.transcription_done(transcribe.ticket, "hello")
    assert done == [Send(Result(0.0, 0.05, "hello")), Send(Finished()), Send(Error("STREAM_TOO_LONG")), Close("STREAM_TOO_LONG")]
    assert h.session.state is SessionState.CLOSED
    assert h.session.audio_samples == 1000


def test_max_stream_duration_counts_per_stream() -> None:
    h = Harness(SessionOptions(max_stream_samples=1000)).streaming()
    h.rx(Audio(b"\x00\x00" * 900))
    assert h.rx(Finish())[-1] == Send(Finished())
    h.rx(Begin())
    assert h.rx(Audio(b"\x00\x00" * 900)) == [StreamAudio(b"\x00\x00" * 900)]  # a new stream starts at 0


# ---------------------------------------------------------------------------- options and sentiment

from whisper_streaming.core.options import StreamOptions  # noqa: E402
from whisper_streaming.wire.protocol import Options, OptionsAccepted, Summary  # noqa: E402
from whisper_streaming.analyzers.sentiment import Sentiment  # noqa: E402

POS, NEG = Sentiment("positive", 0.75), Sentiment("negative", 0.5)
ON = Options((("sentiment", "1"),))


def opted_in(options: SessionOptions | None = None) -> Harness:
    h = Harness(options).ready()
    assert h.rx(ON) == [Send(OptionsAccepted((("sentiment", "1"),)))]
    assert h.rx(Begin()) == [StreamStarted(0, "alice")]
    return h


def test_legacy_session_gets_plain_results_and_no_summary() -> None:
    h = Harness().streaming()
    (t,) = h.cut(utt(0.5, 1.0))
    assert "sentiment" not in t.analyses
    # Even if a backend sent a sentiment, a stream without the option shows none.
    assert h.session.transcription_done(t.ticket, "fine", {"sentiment": POS}, "en") == [Send(Result(0.5, 1.0, "fine"))]
    assert h.rx(Finish()) == [StreamEnded(0), Send(Finished())]


def test_opted_in_stream_gets_fields_and_summary_right_before_finished() -> None:
    h = opted_in()
    t0, t1, t2 = h.cut(utt(0.5, 1.0), utt(1.5, 2.0, index=1), utt(2.5, 3.0, index=2))
    assert all("sentiment" in t.analyses for t in (t0, t1, t2))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.session.transcription_done(t2.ticket, "hate", {"sentiment": NEG}, "en") == []  # out of order: waits
    assert h.session.transcription_done(t1.ticket, "", None, "en") == []  # empty: no %R, not counted
    actions = h.session.transcription_done(t0.ticket, "love", {"sentiment": POS}, "en")
    summary = "results: 2\npositive: 1 (50.0%)\nnegative: 1 (50.0%)\nneutral: 0 (0.0%)\nunsupported: 0\nmean score: 0.625"
    assert actions == [
        Send(Result(0.5, 1.0, "love", sentiment_fields(POS))),
        Send(Result(2.5, 3.0, "hate", sentiment_fields(NEG))),
        Send(Summary(summary)),
        Send(Finished()),
    ]
    assert (actions[0].result.stream_index, actions[0].result.language) == (0, "en")


def test_opted_in_stream_without_results_gets_a_zero_summary() -> None:
    h = opted_in()
    assert h.rx(Finish()) == [
        StreamEnded(0),
        Send(Summary("results: 0\npositive: 0 (0.0%)\nnegative: 0 (0.0%)\nneutral: 0 (0.0%)\nunsupported: 0\nmean score: n/a")),
        Send(Finished()),
    ]


def test_missing_sentiment_for_an_opted_in_result_sends_it_plain() -> None:
    h = opted_in()
    (t,) = h.cut(utt(0.5, 1.0))
    assert h.session.transcription_done(t.ticket, "x", None, "en") == [Send(Result(0.5, 1.0, "x"))]


def test_result_text_is_sanitized_before_it_is_sent() -> None:
    h = opted_in()
    (t,) = h.cut(utt(0.5, 1.0))
    assert h.session.transcription_done(t.ticket, " a\tb\nc ", {"sentiment": POS}) == [Send(Result(0.5, 1.0, "a b c", sentiment_fields(POS)))]


def test_options_apply_to_following_streams_even_when_pipelined() -> None:
    h = opted_in()
    (t0,) = h.cut(utt(0.5, 1.0))
    assert h.rx(Finish()) == [StreamEnded(0)]
    assert h.rx(Options((("sentiment", "0"),))) == []  # %O queued behind stream 0's %R, %S, %F
    assert h.rx(Begin()) == [StreamStarted(1, "alice")]
    (t1,) = h.cut(utt(0.25, 0.5))
    assert "sentiment" not in t1.analyses
    assert h.session.transcription_done(t1.ticket, "two", {"sentiment": POS}) == []
    out = h.session.transcription_done(t0.ticket, "one", {"sentiment": POS})
    assert out == [
        Send(Result(0.5, 1.0, "one", sentiment_fields(POS))),
        Send(Summary("results: 1\npositive: 1 (100.0%)\nnegative: 0 (0.0%)\nneutral: 0 (0.0%)\nunsupported: 0\nmean score: 0.750")),
        Send(Finished()),
        Send(OptionsAccepted((("sentiment", "0"),))),
        Send(Result(0.25, 0.5, "two")),
    ]
    assert h.rx(Finish()) == [StreamEnded(1), Send(Finished())]


def test_server_wide_default_and_opt_out() -> None:
    h = Harness(SessionOptions(stream_defaults=StreamOptions(sentiment=True))).streaming()
    (t,) = h.cut(utt(0.5, 1.0))
    assert "sentiment" in t.analyses
    assert h.session.transcription_done(t.ticket, "ok", {"sentiment": POS}) == [Send(Result(0.5, 1.0, "ok", sentiment_fields(POS)))]
    assert [type(a.packet).__name__ for a in h.rx(Finish())[1:]] == ["Summary", "Finished"]
    assert h.rx(Options((("sentiment", "0"),))) == [Send(OptionsAccepted((("sentiment", "0"),)))]
    assert h.rx(Begin()) == [StreamStarted(1, "alice")]
    assert h.rx(Finish()) == [StreamEnded(1), Send(Finished())]


def test_policy_refuses_sentiment() -> None:
    h = Harness(SessionOptions(option_policy={"sentiment": lambda requested: False})).ready()
    assert h.rx(ON) == [Send(OptionsAccepted((("sentiment", "0"),)))]
    assert h.rx(Begin()) == [StreamStarted(0, "alice")]
    (t,) = h.cut(utt(0.5, 1.0))
    assert "sentiment" not in t.analyses


def test_unknown_options_answered_with_what_was_accepted() -> None:
    h = Harness().ready()
    assert h.rx(Options((("captions", "1"),))) == [Send(OptionsAccepted(()))]
    assert h.rx(Options((("captions", "1"), ("sentiment", "1")))) == [Send(OptionsAccepted((("sentiment", "1"),)))]


@pytest.mark.parametrize(
    ("setup", "packet", "reason"),
    [
        ("fresh", ON, "OPTIONS_BEFORE_USER"),
        ("streaming", ON, "OPTIONS_WHILE_STREAMING"),
        ("ready", Options((("sentiment", "yes"),)), "BAD_OPTION"),
    ],
)
def test_option_errors(setup: str, packet: Options, reason: str) -> None:
    h = Harness()
    if setup == "ready":
        h.ready()
    elif setup == "streaming":
        h.streaming()
    assert_error(h.rx(packet), reason)
    assert_dead(h.session)


# ---------------------------------------------------------------------------- per-stream audio format

from whisper_streaming.core import audio_format  # noqa: E402


def _tel_session(rates: list[int]) -> Session:
    def is_speech(frame: bytes, rate: int) -> bool:
        rates.append(rate)
        return bool(np.frombuffer(frame, dtype=np.int16).any())

    s = TcpSession(Session(segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=is_speech)))
    assert s.receive_packet(UserId("alice")) == [Send(Welcome("Welcome!"))]
    return s


def test_8khz_mulaw_stream_times_are_seconds_of_caller_audio() -> None:
    rates: list[int] = []
    s = _tel_session(rates)
    assert s.receive_packet(Options((("sample_rate", "8000"), ("encoding", "mulaw")))) == [
        Send(OptionsAccepted((("sample_rate", "8000"), ("encoding", "mulaw"))))
    ]
    assert s.receive_packet(Begin()) == [StreamStarted(0, "alice", 8000)]
    fs = 240  # 30 ms at 8 kHz
    voiced = np.resize([1000, -1000], 33 * fs)  # a constant would be digital silence
    samples = np.concatenate([np.zeros(32 * fs), voiced, np.zeros(16 * fs)]).astype(np.int16)
    wire = audio_format.encode(samples, "mulaw")
    assert len(wire) == len(samples)  # one byte a sample
    actions = s.receive_packet(Audio(wire[:-1]))  # an odd G.711 byte count is fine
    actions += s.receive_packet(Audio(wire[-1:]))
    audio = [a for a in actions if isinstance(a, StreamAudio)]
    decoded = b"".join(a.pcm for a in audio)
    assert decoded == audio_format.decode(wire, "mulaw").astype("<i2").tobytes()  # s16le at 8 kHz, for PCM saving
    (t,) = [a for a in actions if isinstance(a, Transcribe)]
    assert set(rates) == {8000}  # the VAD runs at the caller's rate
    assert t.utterance.sample_rate_hz == 8000 and t.utterance.speech_start_sample == 32 * fs
    asr = t.asr_samples()
    assert asr.dtype == np.int16 and len(asr) == 2 * len(t.utterance.samples)  # 16 kHz for Whisper
    assert s.transcription_done(t.ticket, "hello") == [Send(Result(0.96, 1.95, "hello"))]
    assert s.audio_s == pytest.approx(len(samples) / 8000)
    assert s.audio_samples == len(samples)


def test_odd_pcm_s16le_length_is_rejected_by_the_session() -> None:
    h = Harness().streaming()
    assert h.rx(Audio(b"abc")) == [Send(Error("ODD_PCM_LENGTH")), Close("ODD_PCM_LENGTH: PCM s16le needs an even byte count, got 3")]


def test_stream_limit_scales_with_the_stream_rate() -> None:
    h = Harness(SessionOptions(max_stream_samples=16000)).ready()  # 1 s at the server's 16 kHz
    h.rx(Options((("sample_rate", "8000"), ("encoding", "alaw"))))
    assert h.rx(Begin()) == [StreamStarted(0, "alice", 8000)]
    actions = h.rx(Audio(b"\xd5" * 9000))  # 1.125 s at 8 kHz
    assert actions[0] == StreamAudio(audio_format.decode(b"\xd5" * 8000, "alaw").astype("<i2").tobytes())
    assert actions[-1] == Close("STREAM_TOO_LONG")


# ---------------------------------------------------------------------------- speculation


def _kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_tentative_utterance_is_offered_once_then_claimed_by_its_transcribe() -> None:
    h = Harness().streaming()
    u = utt(1.0, 2.0)
    h.seg.tentative = u
    actions = h.rx(Audio(PCM))
    assert _kinds(actions) == ["StreamAudio", "Speculate"]
    spec = actions[1]
    assert spec.utterance is u and spec.stream_index == 0 and spec.analyses == frozenset()
    assert h.rx(Audio(PCM)) == [StreamAudio(PCM)]  # still the same tentative: nothing new
    h.seg.tentative = None
    h.seg.cut = [u]  # the endpoint confirms it
    actions = h.rx(Audio(PCM))
    assert _kinds(actions) == ["StreamAudio", "Transcribe"]
    t = actions[1]
    assert t.claims == spec.key and t.ticket != spec.key
    assert h.session.transcription_done(t.ticket, "hello") == [Send(Result(1.0, 2.0, "hello"))]


def test_speculation_is_cancelled_when_speech_resumes_or_the_utterance_differs() -> None:
    h = Harness().streaming()
    h.seg.tentative = utt(1.0, 2.0)
    spec = h.rx(Audio(PCM))[1]
    h.seg.tentative = None  # a voiced frame came back
    assert h.rx(Audio(PCM)) == [StreamAudio(PCM), CancelSpeculation(spec.key)]
    h.seg.tentative = utt(1.0, 3.0)  # a longer one, later
    spec2 = h.rx(Audio(PCM))[1]
    assert isinstance(spec2, Speculate) and spec2.key != spec.key
    h.seg.tentative = None
    longer = utt(1.0, 3.5)  # e.g. cut by the cap instead: other audio
    h.seg.cut = [longer]
    actions = h.rx(Audio(PCM))
    assert _kinds(actions) == ["StreamAudio", "CancelSpeculation", "Transcribe"]
    assert actions[1].key == spec2.key and actions[2].claims is None


def test_speculation_at_finish_is_claimed_by_the_flushed_utterance_or_cancelled() -> None:
    h = Harness().streaming()
    u = utt(1.0, 2.0)
    h.seg.tentative = u
    spec = h.rx(Audio(PCM))[1]
    h.seg.at_flush = [u]
    actions = h.rx(Finish())
    assert _kinds(actions)[:2] == ["Transcribe", "StreamEnded"] and actions[0].claims == spec.key
    h2 = Harness().streaming()
    h2.seg.tentative = utt(1.0, 2.0)
    spec = h2.rx(Audio(PCM))[1]
    actions = h2.rx(Finish())  # flush emits nothing (e.g. too little speech)
    assert actions[0] == CancelSpeculation(spec.key) and Send(Finished()) in actions


def test_speculation_is_cancelled_when_the_session_fails() -> None:
    h = Harness().streaming()
    h.seg.tentative = utt(1.0, 2.0)
    spec = h.rx(Audio(PCM))[1]
    actions = h.rx(UserId("again"))
    assert actions[0] == CancelSpeculation(spec.key)
    assert_error(actions[1:], "DUPLICATE_USER")


def test_real_segmenter_speculation_matches_the_cut() -> None:
    """With the real VadSegmenter (fake classifier): one Speculate during the pause, claimed by the cut."""
    s = real_vad_session()
    s.receive_packet(UserId("alice"))
    s.receive_packet(Begin())
    actions = []
    pcm = speech_pcm(40, silent_frames_before=30, silent_frames_after=30)
    for i in range(0, len(pcm), 960):
        actions += s.receive_packet(Audio(pcm[i : i + 960]))
    specs = [a for a in actions if isinstance(a, Speculate)]
    (t,) = [a for a in actions if isinstance(a, Transcribe)]
    assert len(specs) == 1 and not any(isinstance(a, CancelSpeculation) for a in actions)
    assert t.claims == specs[0].key
    np.testing.assert_array_equal(specs[0].utterance.samples, t.utterance.samples)
    assert actions.index(specs[0]) < actions.index(t)


@pytest.mark.parametrize("text, early", [("Ask what you can do for your country.", True), ("what your country can do", False),
                                          ("Well...", False)])
def test_a_speculation_that_ends_a_sentence_ends_the_utterance_at_the_shorter_pause(text: str, early: bool) -> None:
    """Semantic endpointing (``vad.sentence_end_silence_frames``): the speculation's text ends a
    sentence, so 8 silent frames end the utterance instead of 16; the Transcribe claims it."""
    def is_speech(frame: bytes, rate: int) -> bool:
        return bool(np.frombuffer(frame, dtype=np.int16).any())

    options = SessionOptions(vad=VadOptions(sentence_end_silence_frames=8))
    s = TcpSession(Session(options, segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=is_speech)))
    s.receive_packet(UserId("alice"))
    s.receive_packet(Begin())
    actions = s.receive_packet(Audio(speech_pcm(40, silent_frames_before=30, silent_frames_after=6)))
    (spec,) = [a for a in actions if isinstance(a, Speculate)]
    assert s.speculation_done(spec.key, text) == []  # 6 silent frames so far: not yet
    assert s.speculation_done(spec.key + 100, text) == []  # not the open speculation: ignored
    actions = s.receive_packet(Audio(speech_pcm(0, silent_frames_after=2)))  # 8 silent frames
    transcribes = [a for a in actions if isinstance(a, Transcribe)]
    if early:
        (t,) = transcribes
        assert t.claims == spec.key
        np.testing.assert_array_equal(t.utterance.samples, spec.utterance.samples)
    else:
        assert transcribes == []
        actions = s.receive_packet(Audio(speech_pcm(0, silent_frames_after=8)))  # 16: the usual endpoint
        (t,) = [a for a in actions if isinstance(a, Transcribe)]
        assert t.claims == spec.key


def test_a_sentence_end_after_the_shorter_pause_ends_the_utterance_at_once() -> None:
    def is_speech(frame: bytes, rate: int) -> bool:
        return bool(np.frombuffer(frame, dtype=np.int16).any())

    s = TcpSession(Session(SessionOptions(vad=VadOptions(sentence_end_silence_frames=8)),
                           segmenter_factory=lambda opts: VadSegmenter(opts, is_speech=is_speech)))
    s.receive_packet(UserId("alice"))
    s.receive_packet(Begin())
    actions = s.receive_packet(Audio(speech_pcm(40, silent_frames_before=30, silent_frames_after=10)))
    (spec,) = [a for a in actions if isinstance(a, Speculate)]
    (t,) = [a for a in s.speculation_done(spec.key, "Done.") if isinstance(a, Transcribe)]
    assert t.claims == spec.key
    assert not [a for a in s.receive_packet(Audio(speech_pcm(0, silent_frames_after=10))) if isinstance(a, Transcribe)]  # once


@pytest.mark.parametrize("text, ends", [("Hello.", True), ("Really?", True), ("Stop!", True), ('He said "go."', True),
                                        ("今日は。", True), ("Hello", False), ("Well...", False), ("Well\u2026", False), ("", False)])
def test_ends_sentence(text: str, ends: bool) -> None:
    assert ends_sentence(text) is ends


# ---------------------------------------------------------------------------- language per stream

from whisper_streaming.core.language import LanguagePolicy, LanguageRequest  # noqa: E402
from whisper_streaming.wire.protocol import Options, OptionsAccepted  # noqa: E402


def _language_harness(default: str | None = None) -> Harness:
    return Harness(SessionOptions(default_language=default, language_policy=LanguagePolicy(min_detect_s=2.0, min_probability=0.5)))


def test_language_option_fixes_the_stream_language() -> None:
    h = _language_harness().ready()
    assert h.rx(Options((("language", "EN"),))) == [Send(OptionsAccepted((("language", "en"),)))]
    h.rx(Begin())
    (t,) = h.cut(utt(0.5, 3.5))
    assert t.language == LanguageRequest(fixed="en")
    h.session.transcription_done(t.ticket, "hello", None, "en", 1.0)
    (t2,) = h.cut(utt(4.0, 5.0, 1))
    assert t2.language == LanguageRequest(fixed="en")


def test_server_default_language_applies_unless_the_stream_asks_for_auto() -> None:
    h = _language_harness(default="ko").streaming()
    (t,) = h.cut(utt(0.5, 1.0))
    assert t.language == LanguageRequest(fixed="ko")
    h.rx(Finish())
    h.session.transcription_done(t.ticket, "", None, "ko", 1.0)
    assert h.rx(Options((("language", "auto"),))) == [Send(OptionsAccepted((("language", "auto"),)))]
    h.rx(Begin())
    (t2,) = h.cut(utt(0.5, 1.0))
    assert t2.language == LanguageRequest()


def test_detected_language_is_kept_once_an_utterance_is_long_enough() -> None:
    h = _language_harness().streaming()
    (short,) = h.cut(utt(0.5, 1.0))  # 0.8 s of audio
    assert short.language == LanguageRequest()
    h.session.transcription_done(short.ticket, "ne li", None, "cy", 0.9)  # a fragment: not kept
    (long,) = h.cut(utt(2.0, 5.0, 1))  # 3.3 s
    assert long.language == LanguageRequest()
    h.session.transcription_done(long.ticket, "the birch canoe", None, "en", 0.98)
    (after,) = h.cut(utt(6.0, 6.5, 2))
    assert after.language == LanguageRequest(kept="en")
    # a new stream detects afresh
    h.rx(Finish())
    h.session.transcription_done(after.ticket, "yes", None, "en", 0.4)
    h.rx(Begin())
    (fresh,) = h.cut(utt(0.5, 1.0))
    assert fresh.language == LanguageRequest()


def test_speculation_made_before_the_language_was_kept_is_not_claimed() -> None:
    h = _language_harness().streaming()
    (first,) = h.cut(utt(0.5, 3.5))
    tentative = utt(4.0, 5.0, 1)
    h.seg.tentative = tentative
    spec = [a for a in h.rx(Audio(PCM)) if isinstance(a, Speculate)]
    assert len(spec) == 1 and spec[0].language == LanguageRequest()
    h.session.transcription_done(first.ticket, "hello there", None, "en", 0.99)  # now the stream keeps en
    h.seg.tentative = None
    h.seg.cut = [tentative]
    actions = h.rx(Audio(PCM))
    (t,) = [a for a in actions if isinstance(a, Transcribe)]
    assert t.claims is None and t.language == LanguageRequest(kept="en")
    assert CancelSpeculation(spec[0].key) in actions


def test_speculation_made_before_the_language_was_confirmed_is_still_claimed() -> None:
    # confirmed only says whether the detector runs first: the speculation decoded in the same
    # (kept) language, after a detection, and is as good as a decode made now
    h = Harness(SessionOptions(language_policy=LanguagePolicy(min_detect_s=2.0, min_probability=0.5, confirm_utterances=2))).streaming()
    (first,) = h.cut(utt(0.5, 3.5))
    h.session.transcription_done(first.ticket, "hello there", None, "en", 0.99)  # kept, one detection
    (second,) = h.cut(utt(4.0, 7.0, 1))
    assert second.language == LanguageRequest(kept="en")
    tentative = utt(8.0, 9.0, 2)
    h.seg.tentative = tentative
    spec = [a for a in h.rx(Audio(PCM)) if isinstance(a, Speculate)]
    assert len(spec) == 1 and spec[0].language == LanguageRequest(kept="en")
    h.session.transcription_done(second.ticket, "how are you", None, "en", 0.97)  # now confirmed
    h.seg.tentative = None
    h.seg.cut = [tentative]
    actions = h.rx(Audio(PCM))
    (t,) = [a for a in actions if isinstance(a, Transcribe)]
    assert t.claims == spec[0].key and t.language == LanguageRequest(kept="en", confirmed=True)
    assert not any(isinstance(a, CancelSpeculation) for a in actions)


def test_an_utterance_without_text_does_not_set_the_stream_language() -> None:
    h = _language_harness().streaming()
    (noise,) = h.cut(utt(0.5, 3.5))  # 3.3 s of hold music, "detected" as Nynorsk, no text
    h.session.transcription_done(noise.ticket, "", None, "nn", 0.55)
    (after,) = h.cut(utt(4.0, 5.0, 1))
    assert after.language == LanguageRequest()
