"""Language per stream (pure): choose_language and LanguageTracker."""

from __future__ import annotations

from whisper_streaming.core.language import (LanguagePolicy, LanguageRequest, LanguageTracker, choose_language, detect_first, prefer_switch,
                                             recheck_language)

POLICY = LanguagePolicy(min_detect_s=2.0, min_probability=0.5, redetect_below=0.1)


def test_fixed_language_is_used_without_detection() -> None:
    assert choose_language(LanguageRequest(fixed="ko"), {"en": 0.99}, 5.0, POLICY) == ("ko", 1.0)


def test_without_a_kept_language_the_top_detection_is_used() -> None:
    assert choose_language(LanguageRequest(), {"en": 0.3, "ja": 0.6}, 0.5, POLICY) == ("ja", 0.6)


def test_kept_language_wins_over_a_shaky_detection_on_a_fragment() -> None:
    # a 0.6 s English fragment detected as Welsh: the stream's English is kept
    assert choose_language(LanguageRequest(kept="en"), {"cy": 0.7, "en": 0.02}, 0.6, POLICY) == ("en", 0.02)
    # a long utterance where English is still plausible: kept
    assert choose_language(LanguageRequest(kept="en"), {"de": 0.6, "en": 0.3}, 5.0, POLICY) == ("en", 0.3)


def test_kept_language_is_redetected_on_a_long_utterance_where_it_is_implausible() -> None:
    assert choose_language(LanguageRequest(kept="en"), {"ko": 0.95, "en": 0.01}, 3.0, POLICY) == ("ko", 0.95)


def test_tracker_keeps_the_first_reliable_detection() -> None:
    t = LanguageTracker(None, POLICY)
    assert t.request() == LanguageRequest()
    t.observe("ja", 0.9, 0.8)  # too short to decide on
    assert t.request() == LanguageRequest()
    t.observe("en", 0.4, 4.0)  # long but unsure
    assert t.request() == LanguageRequest()
    t.observe("en", 0.97, 4.0)
    assert t.request() == LanguageRequest(kept="en")
    t.observe("cy", 0.9, 1.0)  # a fragment cannot change it
    assert t.request() == LanguageRequest(kept="en") and t.changes == 0
    t.observe("ko", 0.9, 3.0)  # a re-detected long utterance can
    assert t.request() == LanguageRequest(kept="ko") and t.changes == 1


def test_fixed_tracker_ignores_observations() -> None:
    t = LanguageTracker("en", POLICY)
    t.observe("ko", 0.99, 9.0)
    assert t.request() == LanguageRequest(fixed="en") and t.kept is None


def test_a_kept_language_is_confirmed_by_detections_in_a_row_and_a_change_starts_the_count_again() -> None:
    t = LanguageTracker(None, POLICY)
    assert POLICY.confirm_utterances == 3
    t.observe("en", 0.97, 4.0)
    t.observe("en", 0.99, 1.0)  # too short: not counted
    t.observe("en", 0.9, 2.5)
    assert t.request() == LanguageRequest(kept="en") and t.confirmations == 2
    t.observe("en", 0.3, 4.0)  # kept, but the detector doubted it: the count starts again
    assert t.request() == LanguageRequest(kept="en") and t.confirmations == 0
    for _ in range(3):
        t.observe("en", 0.8, 3.0)
    assert t.request() == LanguageRequest(kept="en", confirmed=True)
    t.observe("ko", 0.9, 3.0)  # a switch: kept again from scratch, the detector runs again
    assert t.request() == LanguageRequest(kept="ko") and t.changes == 1 and t.confirmations == 1
    assert LanguageTracker("en", POLICY).request() == LanguageRequest(fixed="en")


def test_the_detector_runs_first_until_the_kept_language_is_confirmed_unless_the_policy_says_always() -> None:
    assert detect_first(LanguageRequest(), POLICY)
    assert detect_first(LanguageRequest(kept="en"), POLICY)  # kept, not yet confirmed
    assert not detect_first(LanguageRequest(kept="en", confirmed=True), POLICY)
    assert not detect_first(LanguageRequest(fixed="en"), POLICY)
    always = LanguagePolicy(recheck_below_log_prob=None)
    assert detect_first(LanguageRequest(kept="en", confirmed=True), always) and not detect_first(LanguageRequest(fixed="en"), always)


def test_a_confirmed_language_is_rechecked_only_after_a_doubtful_decode_of_a_long_utterance() -> None:
    kept = LanguageRequest(kept="en", confirmed=True)
    assert POLICY.recheck_below_log_prob == -0.8
    assert recheck_language(kept, 3.0, -1.1, POLICY)  # Korean speech decoded as English
    assert not recheck_language(kept, 3.0, -0.5, POLICY)  # a confident decode
    assert not recheck_language(kept, 1.5, -1.1, POLICY)  # too short to replace the language anyway
    assert not recheck_language(kept, 3.0, None, POLICY)  # nothing decoded
    assert not recheck_language(LanguageRequest(fixed="en"), 3.0, -3.0, POLICY)
    assert not recheck_language(LanguageRequest(), 3.0, -3.0, POLICY)  # detected before the decode
    assert not recheck_language(LanguageRequest(kept="en"), 3.0, -3.0, POLICY)  # not confirmed: detected before
    assert not recheck_language(kept, 3.0, -3.0, LanguagePolicy(recheck_below_log_prob=None))  # detected before the decode


def test_requests_decode_in_the_same_language_whether_confirmed_or_not() -> None:
    assert LanguageRequest(kept="en").same_language(LanguageRequest(kept="en", confirmed=True))
    assert not LanguageRequest(kept="en").same_language(LanguageRequest(kept="ko"))
    assert not LanguageRequest(kept="en").same_language(LanguageRequest())
    assert not LanguageRequest(fixed="en").same_language(LanguageRequest(kept="en"))
    assert not LanguageRequest().same_language(None)


def test_a_switch_is_kept_only_when_the_model_trusts_its_text_more() -> None:
    # Korean speech on an English stream: the Korean decode is far more confident (measured -0.23 / -0.95)
    assert prefer_switch(-0.23, -0.95)
    # reverberant English that the detector called Chinese: the Chinese decode is less confident (-0.97 / -0.89)
    assert not prefer_switch(-0.97, -0.89)
    assert not prefer_switch(-0.5, -0.5)  # a tie keeps the stream's language
    assert not prefer_switch(None, -2.0)  # no text in the new language
    assert prefer_switch(-1.5, None)  # the kept language gave no text at all
    assert not prefer_switch(None, None)


def test_a_refused_switch_is_counted_for_the_status_line() -> None:
    from whisper_streaming.backends.base import GuardCounts
    from whisper_streaming.core.transcript import Transcript

    refused = Transcript("hello there", "en", 0.02, (), 3.0, language_switch_refused=True)
    plain = Transcript("hello there", "en", 0.9, (), 3.0)
    counts = GuardCounts().add(refused).add(plain).add(refused)
    assert counts.language_switches_refused == 2 and counts.time_limited == 0 and counts.no_speech_screened == 0
