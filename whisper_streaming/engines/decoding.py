"""Decoding policy, independent of any engine: loop detection, token and time bounds, fallback.

Pure code (no model, no I/O); :class:`~whisper_streaming.engines.faster_whisper.FasterWhisperEngine` drives it,
and tests drive it with fake attempts.

* **Loops.**  Whisper sometimes repeats a short unit until its token limit: ``D D D D``,
  ``4 4 4 4 4 fl fl fl fl fl``, ``$ $ $ ...``, ``style . . . .``.  Whisper's own guard, a gzip
  compression ratio above 2.4 (openai/whisper ``transcribe.py``), misses short loops (a short
  string does not compress: ``1,5kg 1,5kg 1,5kg 1,5kg 1,5kg`` has a ratio of 1.67), so
  :func:`find_loop` looks for a 1-4-word unit repeated in a row (words are also split at a
  comma, hyphen or slash between letters or digits: ``5,5,5,5``)
  (a single word at least :data:`MIN_SINGLE_WORD_REPEATS` times, a 2-4-word unit at least
  :data:`MIN_NGRAM_REPEATS` times, digits only at least :data:`MIN_DIGIT_REPEATS` times), a
  run of punctuation-or-symbol tokens, and, for text written without spaces in a non-Latin
  script, a 1-4-character unit repeated :data:`MIN_CHAR_REPEATS` times (inside a Latin word,
  :data:`MIN_LATIN_CHAR_REPEATS` times).  Numbers are never
  cut: a PIN read digit by digit is speech, not a loop.
* **Echoes.**  On a short window Whisper sometimes writes a whole sentence again after itself
  ("She saw a cat in the neighbor's house she saw a cat in the neighbor's house she saw a cat
  in" for 2.9 s of a noisy line): too long a unit for :func:`find_loop`, too short a text for
  the compression check.  :func:`find_echo` finds a phrase of at least
  :data:`MIN_ECHO_WORDS` words said again right after itself in a text with more words than
  the audio can hold (:attr:`DecodeLimits.short_max_words_per_s`); :func:`cut_echo` keeps the
  first copy.
* **Token bound.**  :func:`max_new_tokens` allows a generous multiple of the tokens speech can
  carry in the utterance's duration instead of Whisper's 448 per window, so a loop ends early.
* **Time bound.**  :class:`DecodeBudget`: one utterance may hold a worker for at most
  ``budget_base_s + budget_per_audio_s * duration`` seconds, checked before each attempt.
* **Fallback.**  :func:`run_attempts` runs the attempts of a plan (e.g. temperatures 0, 0.2,
  ...) in order like Whisper's ``transcribe()`` does, with a loop as one more reason to fall
  back, stops when one is good, when the plan is exhausted, or when the next attempt would
  overrun the budget, and picks the best result (Whisper's rule: the highest average
  log-probability among the attempts that pass the compression check).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "MIN_SINGLE_WORD_REPEATS",
    "MIN_NGRAM_REPEATS",
    "MIN_CHAR_REPEATS",
    "MIN_LATIN_CHAR_REPEATS",
    "Loop",
    "find_loop",
    "cut_loops",
    "cut_loops_kept",
    "MIN_ECHO_WORDS",
    "find_echo",
    "cut_echo",
    "cut_echo_kept",
    "max_new_tokens",
    "DecodeLimits",
    "DecodeBudget",
    "AttemptOutcome",
    "Attempts",
    "run_attempts",
    "is_non_speech_fragment",
]

MIN_SINGLE_WORD_REPEATS = 4
"""A single word repeated this many times in a row is a loop.  Three is left alone: "no, no,
no" and "yes yes yes" are real answers on a call; every loop seen in the field ran to four or
more (``D D D D``, ``In In In In In``, ``sc sc sc sc sc``)."""

MIN_NGRAM_REPEATS = 3
"""A unit of 2-4 words repeated this many times in a row is a loop."""

MIN_PUNCT_RUN = 3
"""This many punctuation-or-symbol tokens in a row (``. . .``, ``$ $ $``) are a loop."""

MIN_CHAR_REPEATS = 6
"""In text without spaces (Korean, Japanese, Chinese runs), a 1-4-character unit repeated this
many times in a row is a loop.  Only characters outside ASCII count: "1000000 dollars", a PIN
"111111" or "0000000123" are numbers, not loops."""

MIN_DIGIT_REPEATS = 8
"""A word made of digits only ("1", "4") is a loop only when repeated this many times in a row:
a PIN or an account number read digit by digit ("1 1 1 1", "0 0 0 0") is real."""

_TOKEN = re.compile(r"\S+")
_WORDLIKE = re.compile(r"\w")
_JOINER = re.compile(r"(?<=\w)[,\-/](?=\w)|(?<=\d)\.(?=\d)")
"""A comma, hyphen or slash between two word characters, or a dot between two digits: a loop
written without spaces (``1,2,3,4,5,5,5,5,5,5,5,5``, ``la-la-la-la``, ``10.1.1.1.1.1.1.1.1``,
all from noise, issue 19) is split there into words, so the same rules apply to it; the
replacement is one space per character, so positions stay those of the text."""


def _norm(token: str) -> str:
    return re.sub(r"[^\w]+", "", token.lower())


@dataclass(frozen=True)
class Loop:
    """A repeated run in a text: characters ``[start_char, end_char)`` hold ``repeats`` copies of
    ``unit``; ``keep_end_char`` is where the text should end to keep one copy."""

    unit: str
    repeats: int
    start_char: int
    end_char: int
    keep_end_char: int


def _words(text: str) -> tuple[list[tuple[int, int]], list[str], list[str]]:
    """Word spans of ``text`` (split also at :data:`_JOINER`), the words, and their normalized forms."""
    spaced = _JOINER.sub(" ", text)
    spans = [(m.start(), m.end()) for m in _TOKEN.finditer(spaced)]
    tokens = [spaced[s:e] for s, e in spans]
    return spans, tokens, [_norm(t) for t in tokens]


def _token_loop(text: str) -> Loop | None:
    spans, tokens, norms = _words(text)
    n = len(tokens)
    # punctuation/symbol runs: tokens with no word character
    i = 0
    while i < n:
        if not _WORDLIKE.search(tokens[i]):
            j = i
            while j < n and not _WORDLIKE.search(tokens[j]):
                j += 1
            if j - i >= MIN_PUNCT_RUN:
                return Loop(tokens[i], j - i, spans[i][0], spans[j - 1][1], spans[i][0])
            i = j
        else:
            i += 1
    for size in (1, 2, 3, 4):
        for i in range(0, n - size * MIN_NGRAM_REPEATS + 1):
            unit = norms[i : i + size]
            if not all(unit):
                continue
            if all(u.isdigit() for u in unit):
                need = MIN_DIGIT_REPEATS
            else:
                need = MIN_SINGLE_WORD_REPEATS if size == 1 else MIN_NGRAM_REPEATS
            reps = 1
            while norms[i + reps * size : i + (reps + 1) * size] == unit:
                reps += 1
            if reps >= need:
                end = i + reps * size
                return Loop(" ".join(unit), reps, spans[i][0], spans[end - 1][1], spans[i + size - 1][1])
    return None


_CHAR_LOOP = re.compile(r"([^\x00-\x7f\s]{1,4}?)\1{%d,}" % (MIN_CHAR_REPEATS - 1))

MIN_LATIN_CHAR_REPEATS = 10
"""Inside a word in Latin letters, a 1-4-letter unit repeated this many times in a row is a loop
(``Mepreveveveveveveveveve…`` from pink noise, issue 19); laughter written out
(``hahahahahaha``, 6) and long words stay well under it."""

_LATIN_CHAR_LOOP = re.compile(r"([A-Za-z]{1,4}?)\1{%d,}" % (MIN_LATIN_CHAR_REPEATS - 1))


def _char_loop(text: str) -> Loop | None:
    m = _CHAR_LOOP.search(text) or _LATIN_CHAR_LOOP.search(text)
    if m is None:
        return None
    unit = m.group(1)
    return Loop(unit, len(m.group(0)) // len(unit), m.start(), m.end(), m.start() + len(unit))


def find_loop(text: str) -> Loop | None:
    """The first repeated run in ``text`` (see the module docstring), or None.

    Words compare case- and punctuation-insensitively (``In, in, in. In`` is one word four
    times).  Pure; linear-ish in the text length (texts are at most a few hundred tokens).
    """
    return _token_loop(text) or _char_loop(text)


def _squash(text: str, kept: list[int]) -> tuple[str, tuple[int, ...]]:
    """``re.sub(r"\\s+", " ", text).strip()``, and for each character left the entry of ``kept``
    (its position in the text before any cut) that it came from."""
    chars: list[str] = []
    where: list[int] = []
    for c, k in zip(text, kept):
        if c.isspace():
            if not chars or chars[-1] == " ":
                continue
            c = " "
        chars.append(c)
        where.append(k)
    if chars and chars[-1] == " ":
        chars.pop()
        where.pop()
    return "".join(chars), tuple(where)


def cut_loops_kept(text: str) -> tuple[str, tuple[int, ...]]:
    """:func:`cut_loops`, and the position in ``text`` of each character of its result (what a
    segment trimmer needs to cut the same characters out of the segments; strictly increasing)."""
    kept = list(range(len(text)))
    for _ in range(100):  # each pass removes one run; texts are short
        loop = find_loop(text)
        if loop is None:
            break
        text = text[: loop.keep_end_char] + text[loop.end_char :]
        kept = kept[: loop.keep_end_char] + kept[loop.end_char :]
    return _squash(text, kept)


def cut_loops(text: str) -> str:
    """``text`` with every repeated run reduced to one copy of its unit (stripped).

    The last resort when no decode is free of the loop: ``In In In In In`` -> ``In``,
    ``style . . . . .`` -> ``style``.
    """
    return cut_loops_kept(text)[0]


MIN_ECHO_WORDS = 5
"""A phrase of at least this many words said again right after itself is an echo (when the audio
cannot hold the text, :func:`find_echo`); shorter repeats are :func:`find_loop`'s."""


def find_echo(text: str, duration_s: float, limits: DecodeLimits) -> Loop | None:
    """The first phrase of at least :data:`MIN_ECHO_WORDS` words that ``text`` says again right
    after itself, with any further copies and an unfinished copy that ends the text
    (``keep_end_char``: the end of the first copy), or None.

    Judged only when the text has more words (split at white space) than
    ``limits.short_max_words + limits.short_max_words_per_s * duration_s`` (``duration_s``: the
    utterance's audio, s; fast speech is about 4 words a second): a speaker who really repeats
    a sentence needs the time to say it twice, and keeps it.  Words compare as in
    :func:`find_loop`; a phrase of digits only (a PIN or an account number read back) is never
    an echo.  Pure.
    """
    if len(text.split()) <= limits.short_max_words + limits.short_max_words_per_s * max(duration_s, 0.0):
        return None  # words counted as is_non_speech_fragment counts them
    spans, _, norms = _words(text)
    n = len(norms)
    for i in range(n - 2 * MIN_ECHO_WORDS + 1):
        for size in range(MIN_ECHO_WORDS, (n - i) // 2 + 1):
            unit = norms[i : i + size]
            if not all(unit) or all(u.isdigit() for u in unit) or norms[i + size : i + 2 * size] != unit:
                continue  # a number read twice (a PIN, an account) is speech
            reps = 2
            while norms[i + reps * size : i + (reps + 1) * size] == unit:
                reps += 1
            end = i + reps * size
            tail = n - end  # an unfinished copy that ends the text (the decode stopped inside it)
            if 0 < tail < size and norms[end:] == unit[:tail]:
                end = n
            return Loop(" ".join(unit), reps, spans[i][0], spans[end - 1][1], spans[i + size - 1][1])
    return None


def cut_echo_kept(text: str, duration_s: float, limits: DecodeLimits) -> tuple[str, tuple[int, ...]]:
    """:func:`cut_echo`, and the position in ``text`` of each character of its result (as
    :func:`cut_loops_kept`; ``text`` itself and every position when it has no echo)."""
    echo = find_echo(text, duration_s, limits)
    if echo is None:
        return text, tuple(range(len(text)))
    kept = list(range(echo.keep_end_char)) + list(range(echo.end_char, len(text)))
    return _squash(text[: echo.keep_end_char] + text[echo.end_char :], kept)


def cut_echo(text: str, duration_s: float, limits: DecodeLimits) -> str:
    """``text`` with the copies of its :func:`find_echo` phrase after the first removed (stripped;
    ``text`` itself when it has none)."""
    return cut_echo_kept(text, duration_s, limits)[0]


def max_new_tokens(duration_s: float, *, tokens_per_s: float, base_tokens: int, model_limit: int = 220) -> int:
    """Tokens a decode of ``duration_s`` of audio may generate: ``base + tokens_per_s * duration``
    (rounded up), at most ``model_limit``.

    Measured on the references of ``shared/data/speech`` (Whisper's tokenizer over each
    file's duration): at most 8.5 text tokens per second in English (short LibriSpeech
    files), 5.6 in Korean, 4.0 on the telephone prompts; timestamp tokens add two per
    segment.  16 + 10/s leaves at least 1.5x that.  Whisper's own limit is
    half its 448-token context per window (``sample_len`` in openai/whisper ``decoding.py``
    is 224), which a looping decode on a 1 s fragment otherwise fills.  The cap is 220 so that
    a prompt of up to 227 tokens (faster-whisper keeps at most 223 of previous text plus the
    start tokens) still fits the 448-token context (faster-whisper raises otherwise).
    """
    return max(1, min(model_limit, base_tokens + math.ceil(tokens_per_s * max(duration_s, 0.0))))


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on one utterance's decoding.

    ``tokens_per_s``/``base_tokens``: see :func:`max_new_tokens`.  ``budget_base_s`` and
    ``budget_per_audio_s``: the time bound of :class:`DecodeBudget`.  ``short_utterance_s``:
    an utterance with at most this much audio (pre-roll and trailing audio included) whose
    chosen decode has a no-speech probability above ``no_speech_threshold`` is dropped, even
    when its log-probability passes Whisper's own silence rule (fragments of noise or breath),
    and so is one whose text has more than ``short_max_words + short_max_words_per_s *
    duration`` words (a sentence "heard" in 0.2 s of codec noise: "I don't know if it's true,
    but I"; fast speech is about 4 words a second).
    """

    tokens_per_s: float = 10.0
    base_tokens: int = 16
    budget_base_s: float = 2.0
    budget_per_audio_s: float = 1.0
    short_utterance_s: float = 1.2
    short_max_words: float = 2.0
    short_max_words_per_s: float = 4.0

    def tokens_for(self, duration_s: float) -> int:
        return max_new_tokens(duration_s, tokens_per_s=self.tokens_per_s, base_tokens=self.base_tokens)

    def budget_s(self, duration_s: float) -> float:
        return self.budget_base_s + self.budget_per_audio_s * max(duration_s, 0.0)


class DecodeBudget:
    """The time one utterance may spend decoding, from construction (a monotonic clock).

    :meth:`allows` says whether an attempt expected to take ``expected_s`` still ends within
    the budget.  The first attempt always runs (its cost is bounded by :func:`max_new_tokens`),
    so the worst case is the budget plus nothing more than the over-estimate error.
    """

    def __init__(self, budget_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.budget_s = budget_s
        self.started = clock()
        self.exhausted = False  # an attempt was skipped for lack of time

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self.started

    def allows(self, expected_s: float) -> bool:
        ok = self.elapsed_s + expected_s <= self.budget_s
        if not ok:
            self.exhausted = True
        return ok


R = TypeVar("R")


@dataclass(frozen=True)
class AttemptOutcome(Generic[R]):
    """What one decode attempt produced, as the fallback rule sees it.

    ``avg_logprob``: mean token log-probability (Whisper's ``avg_logprob``); ``compression_ratio``:
    gzip ratio of the text; ``no_speech_prob``: probability of the no-speech token;
    ``result``: the engine's own value, returned untouched.  ``suspect``: the engine's own
    reason to distrust it (e.g. a trimmed-window decode that stopped early): it falls back,
    and is chosen only when nothing else is left.
    """

    result: R
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    elapsed_s: float = 0.0
    suspect: bool = False


@dataclass(frozen=True)
class Attempts(Generic[R]):
    """What :func:`run_attempts` decided: the ``chosen`` outcome, whether its text ``looped``,
    how many attempts ran, and whether the budget stopped the plan early (``timed_out``)."""

    chosen: AttemptOutcome[R]
    looped: bool
    attempts: int
    timed_out: bool
    loops_seen: int


def run_attempts(
    plan: Sequence[Callable[[], AttemptOutcome[R] | None]],
    budget: DecodeBudget,
    *,
    log_prob_threshold: float | None,
    compression_ratio_threshold: float | None,
    no_speech_threshold: float | None,
) -> Attempts[R]:
    """Run ``plan`` in order until an attempt needs no fallback (Whisper's rule plus loops).

    An attempt may return None: it does not apply (nothing is counted).  An attempt may carry
    an ``applies()`` attribute that says so without running it: the plan counts as stopped by
    the budget (``timed_out``) only if some attempt it skipped applied.
    An attempt *needs a fallback* when its compression ratio is above the threshold, its
    average log-probability below the threshold, or its text loops (:func:`find_loop`) --
    unless it is silence (no-speech probability above the threshold *and* log-probability
    below its threshold), which is accepted as it is (openai/whisper ``transcribe.py``).
    Before each attempt after the first, the budget must allow the slowest attempt so far.

    A ``suspect`` attempt always falls back.  When every attempt that ran needs a fallback
    (suspect ones only if nothing else ran): the loop-free one with the highest average
    log-probability among those under the compression threshold, else among all loop-free
    ones, else the highest overall (its text still loops: the caller cuts it).

    Raises:
        ValueError: an empty plan.
    """
    if not plan:
        raise ValueError("empty decode plan")
    outcomes: list[AttemptOutcome[R]] = []
    loops: list[bool] = []
    timed_out = False
    for k, attempt in enumerate(plan):
        if outcomes and not budget.allows(max(o.elapsed_s for o in outcomes)):
            timed_out = any(getattr(rest, "applies", lambda: True)() for rest in plan[k:])
            break
        outcome = attempt()
        if outcome is None:  # the attempt does not apply (e.g. a retry for a failure that did not occur)
            continue
        looped = find_loop(outcome.text) is not None
        outcomes.append(outcome)
        loops.append(looped)
        low_logprob = log_prob_threshold is not None and outcome.avg_logprob < log_prob_threshold
        silence = no_speech_threshold is not None and outcome.no_speech_prob > no_speech_threshold and low_logprob
        too_repetitive = compression_ratio_threshold is not None and outcome.compression_ratio > compression_ratio_threshold
        if not outcome.suspect and (silence or not (low_logprob or too_repetitive or looped)):
            return Attempts(outcome, looped, len(outcomes), False, sum(loops))
    if not outcomes:
        raise ValueError("no attempt of the plan applied")
    trusted = [k for k in range(len(outcomes)) if not outcomes[k].suspect] or list(range(len(outcomes)))
    pool = [k for k in trusted if not loops[k]]
    under = [k for k in pool if compression_ratio_threshold is None or outcomes[k].compression_ratio <= compression_ratio_threshold]
    candidates = under or pool or trusted
    best = max(candidates, key=lambda k: outcomes[k].avg_logprob)
    return Attempts(outcomes[best], loops[best], len(outcomes), timed_out, sum(loops))


def is_non_speech_fragment(text: str, duration_s: float, no_speech_prob: float, no_speech_threshold: float | None,
                           limits: DecodeLimits) -> bool:
    """Whether a short utterance's decode is to be dropped (see :class:`DecodeLimits`).

    ``duration_s``: the utterance's audio (pre-roll and trailing audio included).  Only
    utterances of at most ``limits.short_utterance_s`` are judged; a real one-word answer
    ("yes", "no", a digit) has a low no-speech probability and few words, so it stays.
    """
    if not text or duration_s > limits.short_utterance_s:
        return False
    if no_speech_threshold is not None and no_speech_prob > no_speech_threshold:
        return True
    return len(text.split()) > limits.short_max_words + limits.short_max_words_per_s * duration_s
