"""Speakers in the session (issue 15): voice samples (``%o enroll=``), labels on results
(enrolled names, ``unknown``, auto ``S1``/``S2``), saved voices (``LoadVoices``), enrolment errors;
rendered as V1.0 packets.  Voices are synthetic unit vectors (no model)."""

from __future__ import annotations

import numpy as np

from test_session import Harness, assert_dead, assert_error, utt
from whisper_streaming.core.speakers import SPEAKER, SpeakerPolicy, VoicePrint
from whisper_streaming.pipeline.session import LoadVoices, SessionOptions
from whisper_streaming.wire.protocol import Finish, Finished, Options, OptionsAccepted, Result, Summary

DIM = 16
_rng = np.random.default_rng(5)
CENTRES = {name: v / np.linalg.norm(v) for name, v in zip(("alice", "bob", "carol"), _rng.standard_normal((3, DIM)))}


def voice(who: str, speech_s: float = 2.0, noise: float = 0.05) -> VoicePrint:
    v = CENTRES[who] + noise * _rng.standard_normal(DIM) / np.sqrt(DIM)
    return VoicePrint.from_array(v, speech_s)


POLICY = SpeakerPolicy(identify_threshold=0.6, auto_threshold=0.6)


def harness() -> Harness:
    return Harness(SessionOptions(speaker_policy=POLICY))


def options(h: Harness, text: str) -> list:
    from whisper_streaming.core.options import parse_pairs

    return h.rx(Options(parse_pairs(text)))


def stream(h: Harness, voices: list[VoicePrint | None], texts: list[str] | None = None) -> list:
    """One stream: one utterance per voice (done in order), then finish; every packet sent."""
    from whisper_streaming.wire.protocol import Begin

    sent = list(h.rx(Begin()))
    utterances = [utt(1.0 + 2 * i, 2.0 + 2 * i, index=i) for i in range(len(voices))]
    transcribes = h.cut(*utterances) if utterances else []
    for i, (t, v) in enumerate(zip(transcribes, voices)):
        annotations = {SPEAKER: v} if SPEAKER in t.analyses and v is not None else {}
        sent += h.session.transcription_done(t.ticket, (texts or [f"said {i}"] * len(voices))[i], annotations)
    sent += h.rx(Finish())
    return [a.packet for a in sent if hasattr(a, "packet")]


def results(packets: list) -> list[tuple[str, ...]]:
    return [tuple(v for k, v in p.fields if k == "speaker") for p in packets if isinstance(p, Result)]


def test_two_enrolled_speakers_label_every_later_result_and_a_stranger_is_unknown() -> None:
    h = harness().ready()
    assert options(h, "enroll=alice")[0].packet == OptionsAccepted((("enroll", "alice"),))
    sample = stream(h, [voice("alice", 2.0), voice("alice", 2.5)])
    assert results(sample) == [(), ()]  # a voice sample's own results carry no label
    assert sample[-2:] == [Summary("enrolled: alice\nspeech: 4.50 s"), Finished()]
    options(h, "enroll=bob")
    assert stream(h, [voice("bob", 4.0)])[-2] == Summary("enrolled: bob\nspeech: 4.00 s")
    assert h.session.speakers.names == ("alice", "bob")
    labelled = stream(h, [voice("bob"), voice("alice"), voice("carol"), voice("alice")])
    assert results(labelled) == [("bob",), ("alice",), ("unknown",), ("alice",)]
    scores = [dict(p.fields)["speaker_score"] for p in labelled if isinstance(p, Result)]
    assert all(0.0 <= float(s) <= 1.0 for s in scores) and float(scores[0]) > 0.9
    assert not any(isinstance(p, Summary) for p in labelled)  # a labelled stream has no %S of its own


def test_enrol_applies_to_one_stream_and_speakers_off_stops_labels() -> None:
    h = harness().ready()
    options(h, "enroll=alice")
    stream(h, [voice("alice", 4.0)])
    assert h.session.stream_options.enroll is None
    options(h, "speakers=off")
    assert results(stream(h, [voice("alice")])) == [()]
    options(h, "speakers=")  # back to the default: the enrolled names
    assert results(stream(h, [voice("alice")])) == [("alice",)]


def test_auto_labels_open_in_order_within_each_stream() -> None:
    h = harness().ready()
    options(h, "speakers=auto")
    got = results(stream(h, [voice("bob"), voice("alice"), voice("bob"), voice("carol"), voice("alice")]))
    assert got == [("S1",), ("S2",), ("S1",), ("S3",), ("S2",)]
    assert results(stream(h, [voice("alice"), voice("bob")])) == [("S1",), ("S2",)]  # a new stream starts again


def test_results_done_out_of_order_are_labelled_in_delivery_order() -> None:
    from whisper_streaming.wire.protocol import Begin

    h = harness().ready()
    options(h, "speakers=auto")
    h.rx(Begin())
    t = h.cut(utt(1, 2, 0), utt(3, 4, 1))
    first = h.session.transcription_done(t[1].ticket, "later", {SPEAKER: voice("bob")})  # held back: the first is pending
    assert first == []
    out = h.session.transcription_done(t[0].ticket, "first", {SPEAKER: voice("alice")})
    assert results([a.packet for a in out]) == [("S1",), ("S2",)]  # alice first: S1, as the results go out


def test_too_little_speech_or_none_ends_the_session_with_enroll_too_short() -> None:
    h = harness().ready()
    options(h, "enroll=alice")
    sent = stream(h, [voice("alice", 1.0)])
    assert sent[-1].reason == "ENROLL_TOO_SHORT"
    assert_dead(h.session)
    h = harness().ready()
    options(h, "enroll=alice")
    assert stream(h, [])[-1].reason == "ENROLL_TOO_SHORT"  # silence: no utterance at all


def test_duplicate_and_bad_names() -> None:
    from whisper_streaming.wire.protocol import Begin

    h = harness().ready()
    options(h, "enroll=alice")
    stream(h, [voice("alice", 4.0)])
    options(h, "enroll=alice")
    assert_error(h.rx(Begin()), "DUPLICATE_SPEAKER")
    for bad in ("unknown", "S1", ".hidden", "a b", "x" * 33):
        h = harness().ready()
        assert_error(options(h, f"enroll={bad}"), "BAD_SPEAKER_NAME")


def test_saved_voices_are_asked_for_loaded_and_used() -> None:
    h = harness().ready()
    actions = options(h, "speakers=alice,bob")
    assert actions[-1] == LoadVoices(("alice", "bob"))
    assert h.session.voices_loaded({"alice": voice("alice", 4.0), "bob": voice("bob", 4.0)}) == []
    assert results(stream(h, [voice("bob"), voice("alice")])) == [("bob",), ("alice",)]
    h = harness().ready()
    options(h, "speakers=alice,zed")
    assert_error(h.session.voices_loaded({"alice": voice("alice"), "zed": None}), "UNKNOWN_SPEAKER")


def test_legacy_traffic_is_unchanged_without_speaker_options() -> None:
    h = harness().ready()
    sent = stream(h, [voice("alice")])
    assert results(sent) == [()] and sent[-1] == Finished()
    assert all(p.fields == () for p in sent if isinstance(p, Result))
