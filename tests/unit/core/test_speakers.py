"""Speaker identification logic (core/speakers.py) on synthetic voice vectors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from whisper_streaming.core.speakers import (
    SPEAKER,
    UNKNOWN,
    SpeakerBook,
    SpeakerMatch,
    SpeakerPolicy,
    VoicePrint,
    check_speaker_name,
    cosine,
    merge_voiceprints,
)
from whisper_streaming.errors import EnrollmentError, ErrorReason, RemoteProtocolError, UsageError

DIM = 16


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = 1.0
    return v


def voice_at(base: np.ndarray, other: np.ndarray, cos: float, speech_s: float = 2.0) -> VoicePrint:
    """A voice whose cosine with unit vector ``base`` is exactly ``cos`` (``other`` orthogonal)."""
    return VoicePrint.from_array(cos * base + math.sqrt(1 - cos * cos) * other, speech_s)


POLICY = SpeakerPolicy(identify_threshold=0.5, auto_threshold=0.6, max_auto_labels=3, min_enroll_speech_s=3.0, min_identify_speech_s=0.5)


# --------------------------------------------------------------------------- values


def test_voiceprint_from_array_normalises_and_pickles() -> None:
    vp = VoicePrint.from_array(np.array([3.0, 4.0]), 1.5)
    assert vp.vector == pytest.approx((0.6, 0.8))
    assert all(type(x) is float for x in vp.vector)
    assert pickle.loads(pickle.dumps(vp)) == vp
    assert SPEAKER == "speaker" and UNKNOWN == "unknown"


@pytest.mark.parametrize("vector,speech_s", [((), 1.0), ((0.0, 0.0), 1.0), ((float("nan"), 1.0), 1.0), ((1.0,), -1.0), ((1.0,), float("inf")), ([1.0], 1.0)])
def test_voiceprint_refuses_bad_values(vector: object, speech_s: float) -> None:
    with pytest.raises(UsageError):
        VoicePrint(vector, speech_s)  # type: ignore[arg-type]


def test_from_array_refuses_zero_and_2d() -> None:
    with pytest.raises(UsageError):
        VoicePrint.from_array(np.zeros(4), 1.0)
    with pytest.raises(UsageError):
        VoicePrint.from_array(np.ones((2, 2)), 1.0)


@pytest.mark.parametrize("kwargs", [{"identify_threshold": 1.5}, {"auto_threshold": float("nan")}, {"max_auto_labels": 0},
                                    {"max_auto_labels": True}, {"min_enroll_speech_s": -1.0}, {"min_identify_speech_s": float("inf")}])
def test_policy_refuses_out_of_range(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        SpeakerPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_defaults_are_in_range() -> None:
    p = SpeakerPolicy()
    assert 0.0 < p.identify_threshold < 1.0 and 0.0 < p.auto_threshold < 1.0
    assert p.max_auto_labels == 8 and p.min_enroll_speech_s == 3.0 and p.min_identify_speech_s == 0.5


def test_cosine_and_length_mismatch() -> None:
    a = voice_at(unit(0), unit(1), 0.3)
    assert cosine(a, VoicePrint.from_array(unit(0), 1.0)) == pytest.approx(0.3)
    with pytest.raises(UsageError):
        cosine(a, VoicePrint.from_array(np.ones(3), 1.0))


def test_merge_is_duration_weighted_and_renormalised() -> None:
    a = VoicePrint.from_array(unit(0), 3.0)
    b = VoicePrint.from_array(unit(1), 1.0)
    m = merge_voiceprints([a, b])
    assert m.speech_s == 4.0
    expected = np.array([3.0, 1.0]) / math.hypot(3.0, 1.0)
    assert m.vector[:2] == pytest.approx(tuple(expected))
    assert float(np.linalg.norm(m.vector)) == pytest.approx(1.0)
    # all-zero durations: equal weights
    z = merge_voiceprints([VoicePrint.from_array(unit(0), 0.0), VoicePrint.from_array(unit(1), 0.0)])
    assert z.vector[0] == pytest.approx(z.vector[1]) and z.speech_s == 0.0


def test_merge_refuses_empty_mismatched_and_cancelling() -> None:
    with pytest.raises(UsageError):
        merge_voiceprints([])
    with pytest.raises(UsageError):
        merge_voiceprints([VoicePrint.from_array(np.ones(2), 1.0), VoicePrint.from_array(np.ones(3), 1.0)])
    with pytest.raises(UsageError):
        merge_voiceprints([VoicePrint.from_array(unit(0), 1.0), VoicePrint.from_array(-unit(0), 1.0)])


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["alice", "Bob_2", "dr.who", "a-b", "김민수", "Ærøskøbing", "x" * 32, "S1x", "unknown2", "9", "हिन्दी", "ไทย"])
def test_good_names(name: str) -> None:
    assert check_speaker_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 33, "a b", "a=b", "a\tb", "a/b", "..", ".hidden", "unknown", "UNKNOWN", "S1", "s12", "S007",
                                  "a\nb", "\u0301a", "a\u200bb", "①", 5, None])
def test_bad_names(name: object) -> None:
    with pytest.raises(EnrollmentError) as info:
        check_speaker_name(name)
    assert info.value.reason is ErrorReason.BAD_SPEAKER_NAME


def test_names_are_nfc_normalised() -> None:
    decomposed = "Jose\u0301"
    assert check_speaker_name(decomposed) == "Jos\u00e9"


def test_enrollment_errors_are_peer_faults() -> None:
    for reason in (ErrorReason.ENROLL_TOO_SHORT, ErrorReason.DUPLICATE_SPEAKER, ErrorReason.BAD_SPEAKER_NAME):
        err = EnrollmentError(reason, "why")
        assert isinstance(err, RemoteProtocolError) and err.reason is reason and err.detail == "why"
        assert reason.peer_fault and reason.ws_close_code == 1008 and reason.http_status == 400
        assert str(reason) == reason.name


# --------------------------------------------------------------------------- enrolment


def test_enroll_checks_length_duplicates_and_names() -> None:
    book = SpeakerBook(POLICY)
    with pytest.raises(EnrollmentError) as info:
        book.enroll("alice", VoicePrint.from_array(unit(0), 2.9))
    assert info.value.reason is ErrorReason.ENROLL_TOO_SHORT
    book.enroll("alice", VoicePrint.from_array(unit(0), 3.0))
    with pytest.raises(EnrollmentError) as info:
        book.enroll("alice", VoicePrint.from_array(unit(1), 5.0))
    assert info.value.reason is ErrorReason.DUPLICATE_SPEAKER
    with pytest.raises(EnrollmentError) as info:
        book.enroll("S2", VoicePrint.from_array(unit(1), 5.0))
    assert info.value.reason is ErrorReason.BAD_SPEAKER_NAME
    assert book.names == ("alice",)


def test_load_skips_the_minimum_speech_but_not_the_other_checks() -> None:
    book = SpeakerBook(POLICY)
    book.load("alice", VoicePrint.from_array(unit(0), 0.5))
    book.enroll("bob", VoicePrint.from_array(unit(1), 4.0))
    with pytest.raises(EnrollmentError) as info:
        book.load("bob", VoicePrint.from_array(unit(2), 4.0))
    assert info.value.reason is ErrorReason.DUPLICATE_SPEAKER
    with pytest.raises(EnrollmentError):
        book.load("unknown", VoicePrint.from_array(unit(2), 4.0))
    assert book.names == ("alice", "bob")
    assert book.voice("alice").speech_s == 0.5
    with pytest.raises(KeyError):
        book.voice("carol")


def test_book_refuses_mixed_lengths_and_non_prints() -> None:
    book = SpeakerBook(POLICY)
    book.enroll("alice", VoicePrint.from_array(unit(0), 4.0))
    with pytest.raises(UsageError):
        book.enroll("bob", VoicePrint.from_array(np.ones(3), 4.0))
    with pytest.raises(UsageError):
        book.identify(VoicePrint.from_array(np.ones(3), 4.0))
    with pytest.raises(UsageError):
        book.enroll("bob", (1.0, 0.0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- identify


def test_identify_picks_the_nearest_enrolled_name_above_the_threshold() -> None:
    book = SpeakerBook(POLICY)
    book.enroll("alice", VoicePrint.from_array(unit(0), 4.0))
    book.enroll("bob", VoicePrint.from_array(unit(1), 4.0))
    assert book.identify(voice_at(unit(0), unit(2), 0.8)) == SpeakerMatch("alice", 0.8)
    assert book.identify(voice_at(unit(1), unit(2), 0.55)) == SpeakerMatch("bob", 0.55)
    # exactly at the threshold: accepted; just below: unknown with the nearest score
    assert book.identify(voice_at(unit(1), unit(2), 0.5)).label == "bob"
    assert book.identify(voice_at(unit(1), unit(2), 0.499)) == SpeakerMatch(UNKNOWN, 0.499)


def test_identify_between_two_speakers_takes_the_nearer() -> None:
    book = SpeakerBook(POLICY)
    book.enroll("alice", VoicePrint.from_array(unit(0), 4.0))
    book.enroll("bob", VoicePrint.from_array(unit(1), 4.0))
    v = VoicePrint.from_array(0.6 * unit(0) + 0.8 * unit(1), 2.0)
    assert book.identify(v) == SpeakerMatch("bob", 0.8)


def test_identify_unknown_cases() -> None:
    book = SpeakerBook(POLICY)
    assert book.identify(VoicePrint.from_array(unit(0), 2.0)) == SpeakerMatch(UNKNOWN, 0.0)  # nobody enrolled
    book.enroll("alice", VoicePrint.from_array(unit(0), 4.0))
    assert book.identify(VoicePrint.from_array(unit(0), 0.4)) == SpeakerMatch(UNKNOWN, 1.0)  # too short
    assert book.identify(VoicePrint.from_array(-unit(0), 2.0)) == SpeakerMatch(UNKNOWN, 0.0)  # negative cosine clamps
    # auto labels play no part in identify
    book.auto(VoicePrint.from_array(unit(3), 2.0))
    assert book.identify(VoicePrint.from_array(unit(3), 2.0)).label == UNKNOWN


# --------------------------------------------------------------------------- auto


def test_auto_opens_labels_for_new_voices_and_joins_known_ones() -> None:
    book = SpeakerBook(POLICY)
    assert book.auto(VoicePrint.from_array(unit(0), 2.0)) == SpeakerMatch("S1", 0.0)
    assert book.auto(voice_at(unit(0), unit(5), 0.9)) == SpeakerMatch("S1", 0.9)
    assert book.auto(VoicePrint.from_array(unit(1), 2.0)) == SpeakerMatch("S2", 0.0)
    assert book.auto(voice_at(unit(1), unit(6), 0.7)).label == "S2"
    assert book.auto(voice_at(unit(0), unit(7), 0.59)).label == "S3"  # below auto_threshold: new
    assert book.auto_labels == ("S1", "S2", "S3")
    assert book.names == ()


def test_auto_centroid_is_a_duration_weighted_running_mean() -> None:
    book = SpeakerBook(SpeakerPolicy(identify_threshold=0.5, auto_threshold=0.6))
    book.auto(VoicePrint.from_array(unit(0), 3.0))
    # joins (cos 0.8): centroid = (3*e0 + 1*(0.8 e0 + 0.6 e1)) normalised
    book.auto(VoicePrint.from_array(0.8 * unit(0) + 0.6 * unit(1), 1.0))
    centroid = np.array([3.8, 0.6]) / math.hypot(3.8, 0.6)
    # a probe at the expected centroid matches it exactly (at the old centroid e0 it would be 0.988)
    m = book.auto(VoicePrint.from_array(np.concatenate([centroid, np.zeros(DIM - 2)]), 1.0))
    assert m == SpeakerMatch("S1", 1.0)


def test_auto_short_utterances_never_open_or_move_a_label() -> None:
    book = SpeakerBook(POLICY)
    assert book.auto(VoicePrint.from_array(unit(0), 0.3)) == SpeakerMatch(UNKNOWN, 0.0)
    assert book.auto_labels == ()
    book.auto(VoicePrint.from_array(unit(0), 2.0))
    assert book.auto(VoicePrint.from_array(unit(1), 0.3)) == SpeakerMatch("S1", 0.0)  # nearest, though far
    assert book.auto_labels == ("S1",)
    assert book.auto(VoicePrint.from_array(unit(0), 2.0)) == SpeakerMatch("S1", 1.0)  # centroid did not move


def test_auto_cap_sends_new_voices_to_the_nearest_label_without_moving_it() -> None:
    book = SpeakerBook(POLICY)  # max 3 labels
    for i in range(3):
        book.auto(VoicePrint.from_array(unit(i), 2.0))
    m = book.auto(voice_at(unit(2), unit(9), 0.3))
    assert m == SpeakerMatch("S3", 0.3)
    assert book.auto_labels == ("S1", "S2", "S3")
    assert book.auto(VoicePrint.from_array(unit(2), 2.0)) == SpeakerMatch("S3", 1.0)
