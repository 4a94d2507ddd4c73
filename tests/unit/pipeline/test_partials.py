"""Partial hypotheses (issue 12): the stable prefix, the session's offers and the ``%P`` wire rules.

The session tests run the real VAD on real speech (JFK, 11 s) and answer every decode at once
with a fake text that grows with the audio, so the rules are checked on the packets a client
would see: each ``%P``'s stable part starts with the previous one's within an utterance, an
utterance's ``%P``s come after the previous ``%R`` and before its own, an utterance that ends
with no text after partials gets an empty ``%P``, and a stream that did not ask gets none.
"""

from __future__ import annotations

import numpy as np
import pytest

from speech import JFK, load_speech, silence
from whisper_streaming.errors import UsageError
from whisper_streaming.pipeline.partials import PartialPolicy, StablePrefix, split_units
from whisper_streaming.pipeline.session import CancelSpeculation, DecodePartial, Session, SessionOptions, Speculate, Transcribe
from whisper_streaming.wire.protocol import Audio, Begin, Finish, Finished, Options, OptionsAccepted, Partial, Result, UserId
from whisper_streaming.wire.tcp_session import Send, TcpSession

WORDS = "and so my fellow americans ask not what your country can do for you ask what you can do for your country".split()
CHUNK = 3200  # 0.1 s


# ------------------------------------------------------------------ StablePrefix


def test_local_agreement_commits_what_two_hypotheses_agree_on() -> None:
    sp = StablePrefix()
    assert sp.update("And so my") == ("", "And so my")  # one hypothesis: nothing agreed yet
    assert sp.update("And so, my fellow") == ("And so, my", "fellow")  # case and punctuation ignored
    assert sp.update("and so my fellow Americans ask") == ("And so, my fellow", "Americans ask")
    assert sp.update("And so my yellow") == ("And so, my fellow", "")  # a disagreement never retracts
    assert sp.update("And so my fellow Americans") == ("And so, my fellow", "Americans")


def test_stable_prefix_only_grows_on_random_hypotheses() -> None:
    rng = np.random.default_rng(0)
    sp = StablePrefix()
    previous = ""
    for _ in range(200):
        n = int(rng.integers(0, len(WORDS)))
        words = [w if rng.random() > 0.1 else "uh" for w in WORDS[:n]]
        stable, _ = sp.update(" ".join(words))
        assert stable.startswith(previous)
        previous = stable


def test_text_without_spaces_is_compared_by_character() -> None:
    assert split_units("こんにちは 世界") == (list("こんにちは世界"), "")
    sp = StablePrefix()
    sp.update("今日は")
    assert sp.update("今日はいい天気") == ("今日は", "いい天気")
    assert split_units("안녕하세요 반갑습니다") == (["안녕하세요", "반갑습니다"], " ")  # Korean has spaces


def test_policy_validation_and_cadence() -> None:
    with pytest.raises(UsageError):
        PartialPolicy(min_interval_s=0)
    with pytest.raises(UsageError):
        PartialPolicy(first_after_s=-1)
    p = PartialPolicy(min_interval_s=1.0, cost_factor=2.0)
    assert p.next_after_s(0.2) == 1.0 and p.next_after_s(0.8) == pytest.approx(1.6)


# ------------------------------------------------------------------ the session


def fake_text(samples: int) -> str:
    """What a decode of ``samples`` of audio "hears": one word per 0.4 s."""
    return " ".join(WORDS[: max(0, samples // 6400)])


def run_stream(*, partials: bool, answer_partials: str = "now", final_text: str | None = None,
               policy: PartialPolicy = PartialPolicy(), log: list | None = None) -> tuple[list, list[DecodePartial]]:
    """Stream JFK + silence through a session with the real VAD; answer every job at once.

    ``answer_partials``: ``now`` (done), ``refuse`` (no idle worker), ``late`` (answered only
    after the utterance's endpoint).  Returns the packets sent and the partial decodes asked for.
    """
    s = TcpSession(Session(SessionOptions(partial_policy=policy)))
    sent: list = []
    asked: list[DecodePartial] = []
    held: list[DecodePartial] = []

    def carry_out(actions: list) -> None:
        for a in actions:
            if log is not None:
                if isinstance(a, Speculate):
                    log.append(("speculate", a.key))
                elif isinstance(a, CancelSpeculation):
                    log.append(("cancel", a.key))
                elif isinstance(a, Transcribe):
                    log.append(("claim", a.claims))
                elif isinstance(a, DecodePartial):
                    log.append(("partial", a.key))
            if isinstance(a, Send):
                sent.append(a.packet)
            elif isinstance(a, DecodePartial):
                asked.append(a)
                n = len(a.utterance.samples)
                if answer_partials == "now":
                    carry_out(s.partial_done(a.key, fake_text(n), 0.2))
                elif answer_partials == "refuse":
                    carry_out(s.partial_refused(a.key))
                else:
                    held.append(a)
            elif isinstance(a, Transcribe):
                for h in held:  # the endpoint came first: these are stale now
                    carry_out(s.partial_done(h.key, fake_text(len(h.utterance.samples)), 0.2))
                held.clear()
                text = fake_text(len(a.utterance.samples)) if final_text is None else final_text
                carry_out(s.transcription_done(a.ticket, text))

    carry_out(s.receive_packet(UserId("alice")))
    if partials:
        carry_out(s.receive_packet(Options((("partials", "1"),))))
    carry_out(s.receive_packet(Begin()))
    pcm = load_speech(JFK)[0] + silence(1.0)
    for i in range(0, len(pcm), CHUNK):
        carry_out(s.receive_packet(Audio(pcm[i : i + CHUNK])))
    carry_out(s.receive_packet(Finish()))
    return sent, asked


def test_partials_follow_the_wire_rules_on_real_speech() -> None:
    sent, asked = run_stream(partials=True)
    assert OptionsAccepted((("partials", "1"),)) in sent
    partials = [p for p in sent if isinstance(p, Partial)]
    results = [p for p in sent if isinstance(p, Result)]
    assert len(results) >= 2 and len(partials) >= 4 and asked
    assert sent[-1] == Finished()
    # each utterance: its partials come after the previous %R and before its own %R
    current: list[Partial] = []
    for p in sent:
        if isinstance(p, Partial):
            if current:
                assert p.start_s == current[-1].start_s
                assert p.stable.startswith(current[-1].stable)  # the stable part is never retracted
                assert p.end_s >= current[-1].end_s
            current.append(p)
        elif isinstance(p, Result):
            assert all(c.start_s == p.start_s for c in current)  # the %R supersedes that utterance's partials
            current = []
    assert any(p.stable for p in partials)  # LocalAgreement committed something


def test_first_partial_comes_after_first_after_s_of_speech() -> None:
    _, asked = run_stream(partials=True)
    first = asked[0].utterance
    covered = first.audio_start_sample + len(first.samples) - first.speech_start_sample
    assert 1.0 * 16000 <= covered < 1.3 * 16000


def test_a_stream_that_did_not_ask_gets_no_partial_and_the_same_packets() -> None:
    sent, asked = run_stream(partials=False)
    assert asked == [] and not any(isinstance(p, Partial) for p in sent)
    with_partials, _ = run_stream(partials=True)
    finals = [p for p in with_partials if not isinstance(p, (Partial, OptionsAccepted))]
    assert sent == finals  # the finals are byte for byte the same with or without partials


def test_no_partial_is_offered_once_the_speech_has_ended() -> None:
    """Trailing silence (a speculation of the final is outstanding): the final's turn, no partial."""
    log: list[tuple[str, int | None]] = []
    eager = PartialPolicy(first_after_s=0.5, min_interval_s=0.1, cost_factor=0.0)  # a partial due at every packet
    _, asked = run_stream(partials=True, log=log, policy=eager)
    assert len(asked) > 50 and any(kind == "speculate" for kind, _ in log)
    outstanding: set[int | None] = set()
    for kind, key in log:
        if kind == "speculate":
            outstanding.add(key)
        elif kind in ("cancel", "claim"):
            outstanding.discard(key)
        elif kind == "partial":
            assert not outstanding, "a partial was offered while a speculation of the final was outstanding"


def test_a_refused_partial_is_offered_again_with_more_audio() -> None:
    sent, asked = run_stream(partials=True, answer_partials="refuse")
    assert not any(isinstance(p, Partial) for p in sent)
    ends = [a.utterance.audio_start_sample + len(a.utterance.samples) for a in asked if a.utterance.index == 0]
    assert len(ends) >= 3
    gaps = np.diff(ends) / 16000
    assert np.all(gaps >= 0.3 - 0.1) and np.all(gaps < 1.0)  # offered again after retry_after_s, not the full interval


def test_a_partial_that_comes_after_its_endpoint_is_dropped() -> None:
    sent, asked = run_stream(partials=True, answer_partials="late")
    assert asked and not any(isinstance(p, Partial) for p in sent)
    assert len([p for p in sent if isinstance(p, Result)]) >= 2


def test_an_utterance_that_ends_with_no_text_after_partials_gets_an_empty_partial() -> None:
    sent, _ = run_stream(partials=True, final_text="")
    assert not any(isinstance(p, Result) for p in sent)
    partials = [p for p in sent if isinstance(p, Partial)]
    empties = [p for p in partials if not p.stable and not p.unstable]
    assert empties and partials[-1] in empties
    starts = {p.start_s for p in partials}
    assert {p.start_s for p in empties} == starts  # every utterance that showed text is cleared
