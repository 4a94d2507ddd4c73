"""Cut the same characters out of an utterance's segments that a decoding guard cut out of its text.

A guard (:func:`~whisper_streaming.engines.decoding.cut_loops_kept`,
:func:`~whisper_streaming.engines.decoding.cut_echo_kept`) shortens the transcript's text, which
is the segments' texts stripped and joined with one space.  Without this module the segments,
which the batch API writes as SRT, WebVTT and JSON (with their words), would still carry the
loop or the sentence written twice.  Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from whisper_streaming.core.transcript import TranscriptSegment, TranscriptWord

__all__ = ["joined_text", "trim_segments"]


def joined_text(segments: Sequence[TranscriptSegment]) -> str:
    """The text of ``segments`` as the engines build a transcript's text: each segment's text
    stripped, the non-empty ones joined with one space."""
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def _word_spans(stripped: str, words: Sequence[TranscriptWord]) -> list[tuple[int, int] | None]:
    """Where each word's text (stripped) lies in the segment's stripped text, in order; None for a
    word not found after the previous one."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for w in words:
        token = w.word.strip()
        pos = stripped.find(token, cursor) if token else -1
        if pos < 0:
            spans.append(None)
            continue
        spans.append((pos, pos + len(token)))
        cursor = pos + len(token)
    return spans


def trim_segments(segments: Sequence[TranscriptSegment], kept: Sequence[int]) -> tuple[TranscriptSegment, ...]:
    """``segments`` with only the characters of :func:`joined_text` whose positions are in ``kept``.

    Args:
        segments: an utterance's segments, in order.
        kept: positions in ``joined_text(segments)`` of the characters a guard left (from
            ``cut_loops_kept`` / ``cut_echo_kept``, composed when both cut).

    Returns:
        The segments, each with its text reduced to its kept characters (white space runs
        squashed, Whisper's leading space kept); a segment with no kept character other than
        white space is left out.  Words (word timestamps) are kept when any character of theirs
        is, with only those characters.  A segment that lost its head or tail gets the start or
        end time of its first or last kept word (within its own times) when it has words; without
        word timestamps its times stay as decoded (the times of a written-again copy are the
        decoder's invention anyway).  Segments with nothing cut come back unchanged.
    """
    keep = set(kept)
    out: list[TranscriptSegment] = []
    offset = 0
    for seg in segments:
        stripped = seg.text.strip()
        if not stripped:
            continue
        start, end = offset, offset + len(stripped)
        offset = end + 1  # the joining space
        mask = [start + i in keep for i in range(len(stripped))]
        if all(mask):
            out.append(seg)
            continue
        text = re.sub(r"\s+", " ", "".join(c for c, k in zip(stripped, mask) if k)).strip()
        if not text:
            continue
        words = []
        for w, span in zip(seg.words, _word_spans(stripped, seg.words)):
            if span is None:
                continue  # not found in the text: nothing of it can be shown to be kept
            a, b = span
            if all(mask[a:b]):
                words.append(w)
            elif any(mask[a:b]):  # cut inside the word (Mepreveveve... -> Mepreve, 5,5,5,5 -> 5)
                part = "".join(c for c, k in zip(stripped[a:b], mask[a:b]) if k).strip()
                if part:
                    words.append(replace(w, word=w.word[: len(w.word) - len(w.word.lstrip())] + part))
        start_s, end_s = seg.start_s, seg.end_s
        if words:
            if not mask[0]:
                start_s = min(max(start_s, words[0].start_s), end_s)
            if not mask[-1]:
                end_s = max(min(end_s, words[-1].end_s), start_s)
        lead = " " if seg.text[:1].isspace() else ""
        out.append(replace(seg, text=lead + text, words=tuple(words), start_s=start_s, end_s=end_s))
    return tuple(out)
