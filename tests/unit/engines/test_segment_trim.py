"""The segments lose what a decoding guard cut from the text (whisper_streaming.engines.segment_trim)."""

from __future__ import annotations

import pytest

from whisper_streaming.core.transcript import TranscriptSegment, TranscriptWord
from whisper_streaming.engines.decoding import DecodeLimits, cut_echo, cut_echo_kept, cut_loops, cut_loops_kept
from whisper_streaming.engines.segment_trim import joined_text, trim_segments


def _seg(start_s: float, end_s: float, text: str, words: tuple[tuple[float, float, str], ...] = ()) -> TranscriptSegment:
    return TranscriptSegment(start_s, end_s, text, -0.3, 0.01, 1.2, tuple(TranscriptWord(a, b, w, 0.9) for a, b, w in words))


@pytest.mark.parametrize("text", [
    "D D D D D D",
    "I said  D D D D D D and then",
    "4 4 4 4 4 fl fl fl fl fl",
    "style . . . . . . . .",
    "  In, in, in. In in  ",
    "Mepreveveveveveveveveveveve the end",
    "nothing repeats here",
])
def test_cut_loops_kept_names_where_each_character_came_from(text: str) -> None:
    cut, kept = cut_loops_kept(text)
    assert cut == cut_loops(text)
    assert len(kept) == len(cut) and list(kept) == sorted(set(kept))  # one position each, in order
    for c, k in zip(cut, kept):
        assert text[k] == c or (c == " " and text[k].isspace())


def test_cut_echo_kept_names_where_each_character_came_from() -> None:
    text = "She saw a cat in the neighbor's house she saw a cat in the neighbor's house she saw a cat in"
    cut, kept = cut_echo_kept(text, 2.88, DecodeLimits())
    assert cut == cut_echo(text, 2.88, DecodeLimits()) == "She saw a cat in the neighbor's house"
    assert [text[k] for k in kept] == list(cut)
    # no echo: the text and every position as they are
    assert cut_echo_kept(text, 6.0, DecodeLimits()) == (text, tuple(range(len(text))))


def test_an_echo_across_two_segments_leaves_only_the_first_copy() -> None:
    segments = (
        _seg(0.0, 1.8, " She saw a cat in the neighbor's house"),
        _seg(1.8, 2.88, " she saw a cat in the neighbor's house she saw a cat in"),
    )
    text = joined_text(segments)
    cut, kept = cut_echo_kept(text, 2.88, DecodeLimits())
    trimmed = trim_segments(segments, kept)
    assert trimmed == segments[:1]
    assert joined_text(trimmed) == cut


def test_a_loop_inside_a_segment_keeps_one_copy_and_its_words() -> None:
    words = ((1.0, 1.3, " I"), (1.3, 1.6, " said"), (1.6, 1.8, " D"), (1.8, 2.0, " D"), (2.0, 2.2, " D"), (2.2, 2.4, " D"))
    segments = (_seg(0.0, 0.9, " Hello."), _seg(1.0, 3.0, " I said D D D D", words))
    text = joined_text(segments)
    cut, kept = cut_loops_kept(text)
    trimmed = trim_segments(segments, kept)
    assert joined_text(trimmed) == cut == "Hello. I said D"
    assert trimmed[0] is segments[0]  # untouched
    second = trimmed[1]
    assert second.text == " I said D"
    assert [w.word for w in second.words] == [" I", " said", " D"]
    assert (second.start_s, second.end_s) == (1.0, 1.8)  # the tail went: the last kept word's end


def test_a_segment_whose_head_went_starts_at_its_first_kept_word() -> None:
    words = ((2.0, 2.2, " go"), (2.2, 2.4, " go"), (2.4, 2.6, " go"), (2.6, 2.8, " go"), (2.8, 3.1, " home"))
    segments = (_seg(2.0, 3.1, " go go go go home", words),)
    # keep only "go home" from the end (as a guard that removed the head would)
    text = joined_text(segments)
    kept = tuple(range(text.index("go home"), len(text)))
    (only,) = trim_segments(segments, kept)
    assert only.text == " go home" and [w.word for w in only.words] == [" go", " home"]
    assert (only.start_s, only.end_s) == (2.6, 3.1)


def test_nothing_cut_gives_the_segments_back_and_an_emptied_segment_goes() -> None:
    segments = (_seg(0.0, 1.0, " One."), _seg(1.0, 2.0, "  "), _seg(2.0, 3.0, " Two."))
    text = joined_text(segments)
    assert text == "One. Two."
    assert trim_segments(segments, range(len(text))) == (segments[0], segments[2])
    assert trim_segments(segments, range(4)) == (segments[0],)
    assert trim_segments(segments, ()) == ()


def test_a_word_cut_inside_keeps_its_kept_part_and_times_stay_inside_the_segment() -> None:
    words = ((0.0, 0.4, " Hello"), (0.4, 2.9, " Mepreveveveveveveveveveveve"))
    segments = (_seg(0.0, 3.0, " Hello Mepreveveveveveveveveveveve", words),)
    text = joined_text(segments)
    cut, kept = cut_loops_kept(text)
    (only,) = trim_segments(segments, kept)
    assert only.text.strip() == cut and cut.startswith("Hello Mepreve")
    assert [w.word for w in only.words] == [" Hello", " " + cut.split()[1]]  # the word keeps what the text keeps
    assert only.start_s <= only.end_s
    # words placed outside their segment never give a segment that ends before it starts
    odd = (_seg(5.0, 6.0, " go go go go home", ((0.1, 0.2, " go"), (0.2, 0.3, " go"), (0.3, 0.4, " go"), (0.4, 0.5, " go"), (0.5, 0.6, " home"))),)
    odd_text = joined_text(odd)
    (trimmed,) = trim_segments(odd, range(odd_text.index("go go"), odd_text.index("go home") - 1))
    assert trimmed.start_s <= trimmed.end_s
