"""Language per stream, not per fragment (pure; no model).

Whisper detects the language of each window from the encoder output; on a fraction of a
second of speech the guess is unreliable (English fragments came back as ``ja``, ``cy``,
``nn``, ``ar`` and were decoded as gibberish in those languages).  A stream's language is
therefore:

* **fixed** when the client sends ``%o language=<code>`` or the server has ``model.language``:
  every utterance is decoded in it, no detection;
* otherwise **detected once, then kept** (:class:`LanguageTracker`): utterances are decoded
  in the detected language until one utterance of at least ``min_detect_s`` seconds is
  detected with probability at least ``min_probability``; from then on the stream's language
  is kept and passed to the engine with every utterance;
* **re-detected** when the speaker really switches: the kept language's probability is
  checked on the encoder output the engine already has, and an utterance of at least
  ``min_detect_s`` on which it falls below ``redetect_below`` is decoded in the newly
  detected language instead; the tracker then keeps the new language if its probability
  reaches ``min_probability``.  The check is one decoder step with its own cross-attention
  projection of the whole encoder output (about 30 ms of a 300-900 ms call of the base model
  on one CPU thread), so with ``recheck_below_log_prob`` set, once the kept language is
  *confirmed* (detected on ``confirm_utterances`` utterances of at least ``min_detect_s`` in a
  row; a detection of another language there starts the count again, one on which the kept
  language scores below ``min_probability`` sets it back to zero) it runs only after a
  decode in it that the model itself doubts (:func:`recheck_language`): a segment's average
  log-probability below that value.  Until then it runs before every decode, so a wrong first
  detection (degraded audio) is replaced before the detector stops running.  Measured
  (``docs/benchmarks.md``): Korean speech decoded as English scores -1.05 to -1.13, English
  speech as English no lower than -0.87 even at 10 dB SNR of babble; English decoded as
  Korean either comes out as English text anyway or scores -1.2 to -2.3.
* **switched only when the decode agrees** (faster-whisper, finals): when the detector replaces
  the kept language for an utterance, the decode in the new language is kept if the model
  trusts it (no segment below ``recheck_below_log_prob``: a wrong first detection is replaced
  so); a doubtful one is compared with the decode in the kept language, and the text the model
  trusts more (:func:`prefer_switch`) is kept, with its language.  After a recheck the kept
  language's decode is already doubtful, so the two are always compared.  The detector alone
  put Chinese on reverberant English with probability 0.95.

``docs/benchmarks.md`` has the measurements behind the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LanguagePolicy", "LanguageRequest", "LanguageTracker", "choose_language", "detect_first", "prefer_switch",
           "recheck_language"]


@dataclass(frozen=True)
class LanguagePolicy:
    """Thresholds of the per-stream language rule (see the module docstring).

    ``min_detect_s``: seconds of utterance audio a detection must rest on to set or change the
    stream's language (> 0).  ``min_probability``: the detector's probability needed to keep a
    language, in (0, 1].  ``redetect_below``: a kept language whose probability on a long
    enough utterance falls below this is replaced for that utterance, in [0, 1).
    ``recheck_below_log_prob``: with a kept language, the detector runs only after a decode
    with a segment whose average log-probability (natural log, per token) is below this
    (:func:`recheck_language`) once the kept language is confirmed; None: before every decode.
    ``confirm_utterances``: detections of the kept language in a row (each on an utterance of
    at least ``min_detect_s``, with at least ``min_probability``) that confirm it, >= 1.
    English speech decoded under a wrongly kept German or Japanese came out translated or
    looping at -0.6 to -0.75 (``docs/benchmarks.md``), which no threshold tells from a good
    decode: the count is what protects against a wrong first detection.
    """

    min_detect_s: float = 2.0
    min_probability: float = 0.5
    redetect_below: float = 0.1
    recheck_below_log_prob: float | None = -0.8
    confirm_utterances: int = 3


@dataclass(frozen=True)
class LanguageRequest:
    """What the engine is told about an utterance's language.

    ``fixed``: decode in this code, no detection.  ``kept``: the stream's language so far
    (decode in it unless re-detection overrides, see :func:`choose_language`).  Both None:
    detect.  ``confirmed``: the kept language has been detected often enough
    (``LanguagePolicy.confirm_utterances``) for the detector to run only on doubt.
    """

    fixed: str | None = None
    kept: str | None = None
    confirmed: bool = False

    def same_language(self, other: LanguageRequest | None) -> bool:
        """Whether ``other`` decodes in the same language as this request (``fixed`` and
        ``kept`` equal; ``confirmed`` only says whether the detector runs first)."""
        return other is not None and (self.fixed, self.kept) == (other.fixed, other.kept)


def choose_language(
    request: LanguageRequest,
    probabilities: dict[str, float] | None,
    duration_s: float,
    policy: LanguagePolicy,
) -> tuple[str | None, float]:
    """The language to decode an utterance in, and the detector's probability of it.

    ``probabilities``: code -> probability from the detector (None when not run).  Returns
    ``(None, 0.0)`` when there is nothing to decide on (no request, no detection).
    """
    if request.fixed is not None:
        return request.fixed, 1.0
    if not probabilities:
        return request.kept, 1.0 if request.kept is not None else 0.0
    top = max(probabilities, key=probabilities.__getitem__)
    if request.kept is None:
        return top, probabilities[top]
    kept_p = probabilities.get(request.kept, 0.0)
    if duration_s >= policy.min_detect_s and kept_p < policy.redetect_below and top != request.kept:
        return top, probabilities[top]
    return request.kept, kept_p


def detect_first(request: LanguageRequest, policy: LanguagePolicy) -> bool:
    """Whether the engine runs the detector before decoding an utterance: no fixed language,
    and none kept yet, or not yet confirmed, or ``policy.recheck_below_log_prob`` is None."""
    return request.fixed is None and (request.kept is None or not request.confirmed or policy.recheck_below_log_prob is None)


def recheck_language(request: LanguageRequest, duration_s: float, worst_log_prob: float | None,
                     policy: LanguagePolicy) -> bool:
    """Whether to run the detector after a decode in the kept language (not run before it,
    :func:`detect_first`), and decode again if :func:`choose_language` then replaces it.

    ``worst_log_prob``: the lowest average log-probability of the decode's segments (None:
    no segment).  True when the utterance is long enough for re-detection
    (``policy.min_detect_s``) and that value is below ``policy.recheck_below_log_prob``:
    Whisper forced to decode speech in another language doubts its own text (Korean speech
    decoded as English: -1.05 to -1.13 on ``shared/data/speech/ko``), while speech in the kept
    language scores higher (English as English: -0.67 at worst on clean read speech, -0.87 at
    10 dB SNR of babble).  Shorter utterances can never replace the kept language, so they
    never need the detector.
    """
    if request.fixed is not None or detect_first(request, policy):
        return False
    threshold = policy.recheck_below_log_prob
    if duration_s < policy.min_detect_s or worst_log_prob is None or threshold is None:
        return False
    return worst_log_prob < threshold


def prefer_switch(switched_log_prob: float | None, kept_log_prob: float | None) -> bool:
    """Whether an utterance's decode in a newly detected language replaces its decode in the
    stream's kept language: only when the model trusts the new text more.

    Each argument is a decode's mean token log-probability (Whisper's ``avg_logprob``, natural
    log), None for a decode with no text or one that loops or compresses too well (Whisper
    loops confidently).  True when the switched decode has a value and the kept one has none,
    or a strictly higher value.  The detector alone is not enough: on reverberant
    English (a speakerphone, RT60 0.9 s) it gave Chinese with probability 0.95, and the Chinese
    decode scored -0.97 against -0.89 for English; Korean speech on an English stream scored
    -0.23 in Korean against -0.95 in English (``docs/benchmarks.md``, "A language switch must
    win on the decode").
    """
    if switched_log_prob is None:
        return False
    return kept_log_prob is None or switched_log_prob > kept_log_prob


class LanguageTracker:
    """The language state of one stream (see the module docstring).

    Args:
        fixed: a language code every utterance is decoded in (from ``%o language=`` or
            ``model.language``), or None to detect.
        policy: thresholds.
    """

    def __init__(self, fixed: str | None, policy: LanguagePolicy | None = None) -> None:
        self.policy = policy or LanguagePolicy()
        self.fixed = fixed
        self.kept: str | None = None
        self.changes = 0  # how often a kept language was replaced
        self.confirmations = 0  # detections of the kept language in a row (LanguagePolicy.confirm_utterances)

    def request(self) -> LanguageRequest:
        """What to tell the engine about the next utterance."""
        if self.fixed is not None:
            return LanguageRequest(self.fixed)
        return LanguageRequest(None, self.kept, self.kept is not None and self.confirmations >= self.policy.confirm_utterances)

    def observe(self, language: str, probability: float, duration_s: float) -> None:
        """An utterance of ``duration_s`` seconds was decoded in ``language`` (detected with ``probability``)."""
        if self.fixed is not None or not language:
            return
        if duration_s < self.policy.min_detect_s:
            return
        if probability < self.policy.min_probability:
            if language == self.kept:
                self.confirmations = 0  # kept, but the detector doubted it: not confirmed in a row
            return
        if language == self.kept:
            self.confirmations += 1
            return
        if self.kept is not None:
            self.changes += 1
        self.kept = language
        self.confirmations = 1
