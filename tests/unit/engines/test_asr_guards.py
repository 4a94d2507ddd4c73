"""The trimmed-window guards of FasterWhisperEngine: when a decode is redone with the full window."""

from __future__ import annotations

from whisper_streaming.engines.faster_whisper import MIN_TOKENS_PER_S, REPEATED_NGRAM_WORDS, _looks_repeated, _looks_truncated

from whisper_streaming.core.transcript import TranscriptSegment


def seg(text: str) -> TranscriptSegment:
    return TranscriptSegment(0.0, 1.0, text, -0.3, 0.01, 1.2)


def test_sentence_said_twice_is_a_repeat() -> None:
    s = "A gold ring will please most any girl. The long journey home took a year."
    assert _looks_repeated((seg(s), seg(" " + s)))  # across segments
    assert _looks_repeated((seg(s + " " + s.upper()),))  # case and punctuation do not matter


def test_ordinary_text_and_short_repeats_are_not() -> None:
    assert not _looks_repeated((seg("Press 1 to record your unavailable message, press 2 to record your busy message."),))
    assert not _looks_repeated((seg("five five five"),))  # shorter than the n-gram
    assert not _looks_repeated(())
    words = "one two three four".split()
    assert REPEATED_NGRAM_WORDS == 5
    assert not _looks_repeated((seg(" ".join(words + ["x"] + words)),))  # 4 words twice: not enough


def test_a_short_phrase_said_twice_as_the_whole_text_is_a_repeat() -> None:
    assert _looks_repeated((seg(" 10 of cloves.  10 of cloves."),))  # en level-65, "ten of clubs"
    assert _looks_repeated((seg("Thank you."), seg(" Thank you. Thank you.")))  # three times, across segments
    assert not _looks_repeated((seg("No, no."),))  # one word said twice: a real answer, never redone
    assert not _looks_repeated((seg("No, no, no, no."),))  # one word, not a phrase (the loop guard's case)
    assert not _looks_repeated((seg("10 of cloves. 10 of clubs."),))  # not the same phrase
    assert not _looks_repeated((seg("10 of clubs, 10 of clubs, and the 7 of hearts."),))  # more than the phrase


def test_truncation_is_too_few_tokens_for_the_audio() -> None:
    # 3 s of audio, 0.8 s of it endpointing/pre-roll: below 1.5 tokens/s of 2.2 s is truncated
    assert MIN_TOKENS_PER_S == 1.5
    assert _looks_truncated((seg("The pencils"),), 2, 3.0)
    assert not _looks_truncated((seg("The pencils have all been used."),), 7, 3.0)
    assert not _looks_truncated((), 0, 3.0)  # no text at all is silence, not truncation


def test_follow_up_window_is_trimmed_to_its_content_plus_the_pad() -> None:
    import numpy as np

    from whisper_streaming.engines.faster_whisper import trim_window_padding

    window = np.zeros((80, 3000), dtype=np.float32)
    window[:, :250] = 0.5  # 2.5 s of audio left, zero-padded to 30 s by pad_or_trim
    assert trim_window_padding(window, 100).shape == (80, 400)  # 2.5 s + 1 s, rounded up to whole seconds
    assert trim_window_padding(window[None], 400).shape == (1, 80, 700)  # batched input
    window[3, 2999] = 0.1  # content to the end: nothing to cut
    assert trim_window_padding(window, 100).shape == (80, 3000)
    assert trim_window_padding(np.zeros((80, 3000), dtype=np.float32), 100).shape == (80, 100)  # no content: one second
