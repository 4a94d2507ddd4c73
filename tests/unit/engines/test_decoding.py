"""Decoding guards (pure): loop detection and cutting, token bound, time budget, fallback choice."""

from __future__ import annotations

import pytest

from whisper_streaming.engines.decoding import (
    AttemptOutcome,
    DecodeBudget,
    DecodeLimits,
    cut_echo,
    cut_loops,
    find_echo,
    find_loop,
    max_new_tokens,
    run_attempts,
)

# Loops seen from the server on quiet and lossy lines (issue "The main job on audio unlike the test set").
FIELD_LOOPS = [
    "D D D D",
    "4 4 4 4 4 fl fl fl fl fl",
    "In In In In In",
    "$ $ $ $ $ $ $ $ $ $ $ $",
    "style . . . . . . . .",
    "sc sc sc sc sc",
    "l l l l",
    "1,5kg 1,5kg 1,5kg 1,5kg 1,5kg",
    "1,2,3,4,5,5,5,5,5,5,5,5,5",  # white noise, issue 19: one "word" to a space-only tokenizer
    "la-la-la-la-la",
    "10.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1",  # pink noise, issue 19
    "u The Mepreveveveveveveveveveveveveveveveveveveveve",  # pink noise, issue 19
    "I went to the store to the store to the store to the store",
    "그래서 그래서 그래서 그래서 그래서",
    "ああああああああああああ",
]

NOT_LOOPS = [
    "And so my fellow Americans, ask not what your country can do for you.",
    "No, no, no.",
    "yes yes yes",
    "Ten of clubs, nine of clubs.",
    "Had had it.",
    "The birch canoe slid on the smooth planks.",
    "...",
    "안녕하세요 반갑습니다",
    "It costs 1000000 dollars.",
    "My PIN is 1 1 1 1, and the code is 0 0 0 0 0.",
    "account 0000000123",
    "PIN 111111",
    "It costs 1,500,000 dollars, or 1,500 a month.",
    "Version 1.1.1 of the server at 10.1.1.1 costs 1.5 dollars.",
    "PIN 1-1-1-1",
    "well-being is well-being",
    "hahahahahaha",
    "",
]


@pytest.mark.parametrize("text", FIELD_LOOPS)
def test_field_loops_are_found(text: str) -> None:
    assert find_loop(text) is not None


@pytest.mark.parametrize("text", NOT_LOOPS)
def test_ordinary_text_is_not_a_loop(text: str) -> None:
    assert find_loop(text) is None


def test_loop_unit_and_repeats_are_reported() -> None:
    loop = find_loop("Thank you. In In In, in In")
    assert loop is not None and loop.unit == "in" and loop.repeats == 5
    ngram = find_loop("go to the store to the store to the store now")
    assert ngram is not None and ngram.unit == "to the store" and ngram.repeats == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("In In In In In", "In"),
        ("style . . . . . . . .", "style"),
        ("4 4 4 4 4 fl fl fl fl fl", "4 4 4 4 4 fl"),  # digits are cut only from 8 in a row
        ("1 1 1 1 1 1 1 1 1 1", "1"),
        ("The pencils were all used. $ $ $ $ $ $", "The pencils were all used."),
        ("go to the store to the store to the store now", "go to the store now"),
        ("No, no, no.", "No, no, no."),
        ("1,2,3,4,5,5,5,5,5,5,5,5,5", "1,2,3,4,5"),
        ("1,5kg 1,5kg 1,5kg 1,5kg 1,5kg", "1,5kg"),
        ("u The Mepreveveveveveveveveveveveveveve", "u The Mepreve"),
    ],
)
def test_cut_loops_keeps_one_copy(text: str, expected: str) -> None:
    assert cut_loops(text) == expected


ECHO = "She saw a cat in the neighbor's house she saw a cat in the neighbor's house she saw a cat in"
"""tel noisy-gsm-45 (bench/variants.py), 2.88 s of the Harvard list: the decode on the trimmed window
and its redo on the wider one both wrote this."""


def test_an_echo_the_audio_cannot_hold_keeps_its_first_copy() -> None:
    limits = DecodeLimits()  # at most 2 + 4 words per second
    echo = find_echo(ECHO, 2.88, limits)
    assert echo is not None and echo.unit == "she saw a cat in the neighbors house" and echo.repeats == 2
    assert echo.end_char == len(ECHO)  # the unfinished third copy goes too
    assert cut_echo(ECHO, 2.88, limits) == "She saw a cat in the neighbor's house"
    three = "Press 1 for sales and service. Press 1 for sales and service. Press 1 for sales and service. Goodbye."
    assert cut_echo(three, 2.5, limits) == "Press 1 for sales and service. Goodbye."


@pytest.mark.parametrize(
    "text, duration_s",
    [
        (ECHO, 5.0),  # 21 words in 5 s: someone can say that twice (2 + 4 * 5 = 22)
        ("Please hold, please hold, please hold and wait for the next agent", 1.0),  # a 2-word unit: find_loop's
        ("A gold ring will please most any girl. The long journey home took a year.", 1.0),  # no repeat
        ("Press 1 to record. Press 2 to record your busy message. Press 3 to record your name.", 1.0),
        ("Your PIN is 1 2 3 4 5 1 2 3 4 5", 1.5),  # digits only: a number read twice is speech
    ],
)
def test_no_echo_in_speech_that_fits_its_time_or_does_not_repeat_a_long_phrase(text: str, duration_s: float) -> None:
    assert find_echo(text, duration_s, DecodeLimits()) is None
    assert cut_echo(text, duration_s, DecodeLimits()) == text


def test_max_new_tokens_grows_with_duration_and_is_capped() -> None:
    assert max_new_tokens(1.0, tokens_per_s=10, base_tokens=16) == 26
    assert max_new_tokens(10.0, tokens_per_s=10, base_tokens=16) == 116
    assert max_new_tokens(60.0, tokens_per_s=10, base_tokens=16) == 220  # under Whisper's sample_len, room for a prompt
    limits = DecodeLimits()
    assert limits.tokens_for(0.5) < limits.tokens_for(5.0) < 220
    assert limits.budget_s(10.0) == pytest.approx(limits.budget_base_s + 10.0 * limits.budget_per_audio_s)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outcome(text: str, *, logprob: float = -0.2, ratio: float = 1.0, no_speech: float = 0.01, elapsed: float = 0.5,
            suspect: bool = False) -> AttemptOutcome[str]:
    return AttemptOutcome(text, text, logprob, ratio, no_speech, elapsed, suspect)


def plan_of(clock: FakeClock, outcomes: list[AttemptOutcome[str]], ran: list[int]):
    def make(i: int):
        def run() -> AttemptOutcome[str]:
            ran.append(i)
            clock.now += outcomes[i].elapsed_s
            return outcomes[i]
        return run
    return [make(i) for i in range(len(outcomes))]


GUARDS = dict(log_prob_threshold=-1.0, compression_ratio_threshold=2.4, no_speech_threshold=0.6)


def test_good_first_attempt_stops_the_plan() -> None:
    clock, ran = FakeClock(), []
    got = run_attempts(plan_of(clock, [outcome("hello"), outcome("never")], ran), DecodeBudget(10, clock=clock), **GUARDS)
    assert ran == [0] and got.chosen.text == "hello" and got.attempts == 1 and not got.looped and not got.timed_out


def test_a_loop_falls_back_to_the_next_attempt() -> None:
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("D D D D D D"), outcome("the deed is done")], ran)
    got = run_attempts(plan, DecodeBudget(10, clock=clock), **GUARDS)
    assert ran == [0, 1] and got.chosen.text == "the deed is done" and got.loops_seen == 1 and not got.looped


def test_when_every_attempt_loops_the_best_is_flagged_for_cutting() -> None:
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("a a a a a", logprob=-0.5), outcome("b b b b b", logprob=-0.3)], ran)
    got = run_attempts(plan, DecodeBudget(10, clock=clock), **GUARDS)
    assert got.chosen.text == "b b b b b" and got.looped and got.loops_seen == 2


def test_whispers_rules_low_logprob_and_compression_fall_back_silence_does_not() -> None:
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("x", logprob=-1.5), outcome("y", ratio=3.0), outcome("z")], ran)
    assert run_attempts(plan, DecodeBudget(10, clock=clock), **GUARDS).chosen.text == "z"
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("uh", logprob=-1.5, no_speech=0.9), outcome("never")], ran)
    assert run_attempts(plan, DecodeBudget(10, clock=clock), **GUARDS).chosen.text == "uh" and ran == [0]


def test_all_failing_picks_highest_logprob_under_the_compression_threshold() -> None:
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("p", logprob=-1.2), outcome("q", logprob=-1.1, ratio=3.0), outcome("r", logprob=-1.3)], ran)
    assert run_attempts(plan, DecodeBudget(10, clock=clock), **GUARDS).chosen.text == "p"


def test_suspect_attempt_falls_back_and_is_chosen_last() -> None:
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("the pencils", suspect=True), outcome("the pencils have all been used", logprob=-1.2)], ran)
    got = run_attempts(plan, DecodeBudget(10, clock=clock), **GUARDS)
    assert ran == [0, 1] and got.chosen.text == "the pencils have all been used"


def test_the_budget_stops_a_looping_decode_and_bounds_the_time() -> None:
    """A decode that would loop at every temperature: each attempt takes 1.5 s of the 4 s
    budget; the plan of six stops after two, and the time spent stays within the budget."""
    clock, ran = FakeClock(), []
    looping = [outcome(f"{c} {c} {c} {c} {c}", elapsed=1.5) for c in "abcdef"]
    budget = DecodeBudget(4.0, clock=clock)
    got = run_attempts(plan_of(clock, looping, ran), budget, **GUARDS)
    assert ran == [0, 1] and got.timed_out and budget.exhausted
    assert budget.elapsed_s <= 4.0
    assert got.looped and cut_loops(got.chosen.text) in ("a", "b")


def test_budget_is_not_reported_when_the_skipped_attempt_would_not_have_run() -> None:
    clock, ran = FakeClock(), []
    plan = plan_of(clock, [outcome("q", logprob=-1.5, elapsed=5.0)], ran)

    def not_applicable() -> None:
        return None

    not_applicable.applies = lambda: False  # type: ignore[attr-defined]
    got = run_attempts([plan[0], not_applicable], DecodeBudget(1.0, clock=clock), **GUARDS)
    assert ran == [0] and not got.timed_out


def test_first_attempt_always_runs_even_with_no_budget() -> None:
    clock, ran = FakeClock(), []
    got = run_attempts(plan_of(clock, [outcome("q q q q q"), outcome("fine")], ran), DecodeBudget(0.0, clock=clock), **GUARDS)
    assert ran == [0] and got.timed_out and got.attempts == 1


def test_empty_plan_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        run_attempts([], DecodeBudget(1.0), **GUARDS)


def test_short_non_speech_fragments_are_dropped_but_one_word_answers_stay() -> None:
    from whisper_streaming.engines.decoding import is_non_speech_fragment

    limits = DecodeLimits()
    # a sentence "heard" in 0.7 s of audio (0.2 s of codec noise + pre-roll and trailing audio)
    assert is_non_speech_fragment("I don't know if it's true, but I", 0.7, 0.1, 0.6, limits)
    assert is_non_speech_fragment("Thank you.", 0.8, 0.9, 0.6, limits)  # the model says no speech
    assert not is_non_speech_fragment("Yes.", 0.8, 0.1, 0.6, limits)
    assert not is_non_speech_fragment("Ten of clubs.", 1.1, 0.2, 0.6, limits)
    assert not is_non_speech_fragment("Thank you.", 0.8, 0.9, None, limits)  # the check disabled
    long_text = "I don't know if it's true, but I think so"
    assert not is_non_speech_fragment(long_text, 3.0, 0.1, 0.6, limits)  # long utterances are not judged
