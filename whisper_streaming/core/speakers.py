"""Who is speaking (issue 15): voice prints, enrolled-speaker identification, online labels.

Pure values and a sans-IO book of one session's speakers; the voice prints themselves come from
the workers' speaker analyzer (:mod:`whisper_streaming.analyzers.speaker_id`, CAM++ embeddings,
unit L2 norm).  Two voices are compared by the cosine similarity of their vectors.

* :meth:`SpeakerBook.identify`: the enrolled name whose voice print is nearest, if its cosine
  reaches :attr:`SpeakerPolicy.identify_threshold`, else :data:`UNKNOWN` (open-set
  verification against each enrolled print, as in 3D-Speaker's ``speakerlab/bin/infer_sv.py``).
* :meth:`SpeakerBook.auto`: online (leader-follower) clustering within a stream: an utterance
  joins the nearest label if its cosine with the label's centroid reaches
  :attr:`SpeakerPolicy.auto_threshold`, else opens a new label ``S1``, ``S2``...; centroids are
  duration-weighted running means of the members' vectors.

The thresholds' defaults were calibrated on the shared speech data with
``bench/speaker_id_bench.py`` (``docs/benchmarks.md``, "Speaker identification (issue 15)").
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whisper_streaming.errors import EnrollmentError, ErrorReason, UsageError

__all__ = [
    "SPEAKER",
    "UNKNOWN",
    "MAX_SPEAKER_NAME_CHARS",
    "VoicePrint",
    "SpeakerMatch",
    "SpeakerPolicy",
    "check_speaker_name",
    "cosine",
    "merge_voiceprints",
    "SpeakerBook",
]

#: The analysis name: the key of the speaker annotation (``FinalResult.annotations``).
SPEAKER = "speaker"
#: The label of a voice that matches no enrolled speaker.
UNKNOWN = "unknown"
#: Longest speaker name, in characters (after NFC normalisation).
MAX_SPEAKER_NAME_CHARS = 32

_AUTO_LABEL = re.compile(r"[Ss]\d+")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class VoicePrint:
    """One utterance's or one enrolled speaker's voice.

    Attributes:
        vector: the speaker embedding, unit L2 norm (192 floats for CAM++).
        speech_s: seconds of speech it rests on (>= 0); weights it in merges and centroids.

    Raises:
        UsageError: an empty or non-finite vector, a zero vector, or a negative or non-finite
            ``speech_s``.
    """

    vector: tuple[float, ...]
    speech_s: float

    def __post_init__(self) -> None:
        if not isinstance(self.vector, tuple) or not self.vector:
            raise UsageError("a voice print's vector must be a non-empty tuple of floats")
        if not all(_finite(x) for x in self.vector):
            raise UsageError("a voice print's vector must hold finite numbers")
        if not any(self.vector):
            raise UsageError("a voice print's vector must not be all zeros")
        if not _finite(self.speech_s) or self.speech_s < 0:
            raise UsageError(f"speech_s must be a finite number >= 0, got {self.speech_s!r}")

    @classmethod
    def from_array(cls, vector: np.ndarray | Sequence[float], speech_s: float) -> VoicePrint:
        """A voice print of ``vector`` (any shape ``(d,)`` float array or sequence), L2-normalised.

        Raises:
            UsageError: as the constructor, or ``vector`` is not one-dimensional.
        """
        arr = np.asarray(vector, dtype=np.float64)
        if arr.ndim != 1:
            raise UsageError(f"a voice print's vector must be one-dimensional, got shape {arr.shape}")
        norm = float(np.linalg.norm(arr)) if arr.size else 0.0
        if not math.isfinite(norm) or norm == 0.0:
            return cls(tuple(float(x) for x in arr), float(speech_s))  # the constructor says why
        return cls(tuple(float(x) for x in arr / norm), float(speech_s))

    def array(self) -> np.ndarray:
        """The vector as float64, shape ``(d,)``, L2-normalised again (a vector read back from a
        file may have lost a little precision)."""
        arr = np.asarray(self.vector, dtype=np.float64)
        return arr / np.linalg.norm(arr)


@dataclass(frozen=True)
class SpeakerMatch:
    """The speaker of one utterance.

    Attributes:
        label: an enrolled name, :data:`UNKNOWN`, or ``"S1"``, ``"S2"``... in auto mode.
        score: cosine similarity (clamped to 0..1, rounded to 3 decimals) to the chosen
            speaker; for :data:`UNKNOWN`, to the nearest enrolled speaker (0.0 when none is
            enrolled); 0.0 for a label that this utterance opened.
    """

    label: str
    score: float


@dataclass(frozen=True)
class SpeakerPolicy:
    """How voices are matched; validated on construction.

    Attributes:
        identify_threshold: cosine >= this gives the nearest enrolled name, else ``unknown``;
            in [-1, 1].  Default: calibrated in ``docs/benchmarks.md`` (few false accepts).
        auto_threshold: auto mode joins the nearest label if cosine >= this, else opens a new
            label; in [-1, 1].  Default: calibrated there (mean over the datasets).
        max_auto_labels: most labels auto mode opens (>= 1); a new voice past the cap joins the
            nearest label.
        min_enroll_speech_s: an enrolment needs at least this many seconds of speech (>= 0;
            issue 15 asks for 3-5 s).
        min_identify_speech_s: a shorter utterance is ``unknown`` (auto mode: the nearest label
            if any, never a new one, and it does not move the centroid); >= 0.

    Raises:
        UsageError: a value out of its range.
    """

    identify_threshold: float = 0.57
    auto_threshold: float = 0.50
    max_auto_labels: int = 8
    min_enroll_speech_s: float = 3.0
    min_identify_speech_s: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        for name in ("identify_threshold", "auto_threshold"):
            value = getattr(self, name)
            if not _finite(value) or not -1.0 <= value <= 1.0:
                problems.append(f"{name} must be in [-1, 1], got {value!r}")
        if not isinstance(self.max_auto_labels, int) or isinstance(self.max_auto_labels, bool) or self.max_auto_labels < 1:
            problems.append(f"max_auto_labels must be an int >= 1, got {self.max_auto_labels!r}")
        for name in ("min_enroll_speech_s", "min_identify_speech_s"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                problems.append(f"{name} must be >= 0, got {value!r}")
        if problems:
            raise UsageError("; ".join(problems))


def _name_char(char: str, index: int) -> bool:
    """A letter (Unicode L*), a decimal digit (Nd), '_', '-', '.', or after the first character
    a combining mark (Mn, Mc: the vowel signs of Devanagari, Thai...)."""
    if char in "_-.":
        return True
    category = unicodedata.category(char)
    return category[0] == "L" or category == "Nd" or (index > 0 and category in ("Mn", "Mc"))


def check_speaker_name(name: object) -> str:
    """``name`` as a speaker name (NFC-normalised), or :class:`EnrollmentError` ``BAD_SPEAKER_NAME``.

    A name is 1-32 characters, each a letter or digit of any script (with its combining marks),
    ``_``, ``-`` or ``.``; it
    does not start with ``.`` (no ``.``/``..`` or hidden file once saved under ``speakers.dir``),
    is not ``unknown`` (any case) and does not look like an auto label (``S1``, ``s12``...).
    Such a name needs no quoting in a ``%R`` key=value field, a JSON string or a file name.

    Raises:
        EnrollmentError: ``BAD_SPEAKER_NAME``, with a detail that says which rule failed.
    """
    if not isinstance(name, str):
        raise EnrollmentError(ErrorReason.BAD_SPEAKER_NAME, "a speaker name must be text")
    norm = unicodedata.normalize("NFC", name)
    if not 1 <= len(norm) <= MAX_SPEAKER_NAME_CHARS:
        raise EnrollmentError(ErrorReason.BAD_SPEAKER_NAME, f"a speaker name must be 1-{MAX_SPEAKER_NAME_CHARS} characters")
    if not all(_name_char(c, i) for i, c in enumerate(norm)):
        raise EnrollmentError(ErrorReason.BAD_SPEAKER_NAME, "a speaker name may hold only letters, digits, '_', '-' and '.'")
    if norm.startswith("."):
        raise EnrollmentError(ErrorReason.BAD_SPEAKER_NAME, "a speaker name must not start with '.'")
    if norm.casefold() == UNKNOWN:
        raise EnrollmentError(ErrorReason.BAD_SPEAKER_NAME, f"{UNKNOWN!r} is reserved")
    if _AUTO_LABEL.fullmatch(norm):
        raise EnrollmentError(ErrorReason.BAD_SPEAKER_NAME, "names like S1, S2 are reserved for automatic labels")
    return norm


def cosine(a: VoicePrint, b: VoicePrint) -> float:
    """Cosine similarity of two voice prints' vectors, in [-1, 1].

    Raises:
        UsageError: the vectors differ in length.
    """
    if len(a.vector) != len(b.vector):
        raise UsageError(f"voice prints of different lengths: {len(a.vector)} and {len(b.vector)}")
    return float(np.clip(a.array() @ b.array(), -1.0, 1.0))


def merge_voiceprints(prints: Sequence[VoicePrint]) -> VoicePrint:
    """One voice print from several of the same speaker: the mean of the vectors weighted by
    their ``speech_s`` (equal weights when all are 0), L2-normalised; ``speech_s`` is the sum.

    Raises:
        UsageError: no prints, prints of different lengths, or vectors that cancel out.
    """
    if not prints:
        raise UsageError("merge_voiceprints needs at least one voice print")
    dims = {len(p.vector) for p in prints}
    if len(dims) != 1:
        raise UsageError(f"voice prints of different lengths: {sorted(dims)}")
    weights = np.array([p.speech_s for p in prints], dtype=np.float64)
    total_s = float(weights.sum())
    if total_s <= 0:
        weights = np.ones_like(weights)
    mean = (weights[:, None] * np.stack([p.array() for p in prints])).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-9:
        raise UsageError("the voice prints cancel out")
    return VoicePrint(tuple(float(x) for x in mean / norm), total_s)


def _score(value: float) -> float:
    return round(min(max(value, 0.0), 1.0), 3)


class SpeakerBook:
    """One session's speakers: enrolled names and auto-mode labels.  Sans-IO, mutable, not
    thread-safe (the session state machine owns it).

    All voice prints in one book must have the same length (``UsageError`` otherwise: they
    come from the same model).
    """

    def __init__(self, policy: SpeakerPolicy) -> None:
        self.policy = policy
        self._enrolled: dict[str, VoicePrint] = {}
        self._matrix: np.ndarray | None = None  # enrolled vectors, rows in enrolment order
        self._label_sums: list[np.ndarray] = []  # auto labels: duration-weighted sums of vectors
        self._label_speech_s: list[float] = []
        self._dim: int | None = None

    # --- enrolled speakers ---------------------------------------------------------------

    def enroll(self, name: str, voice: VoicePrint) -> None:
        """Enrol ``voice`` (the peer's sample, e.g. a whole enrolment stream merged with
        :func:`merge_voiceprints`) as ``name``.

        Raises:
            EnrollmentError: ``BAD_SPEAKER_NAME`` (see :func:`check_speaker_name`),
                ``DUPLICATE_SPEAKER`` (``name`` already in this book), ``ENROLL_TOO_SHORT``
                (``voice.speech_s`` < ``policy.min_enroll_speech_s``).
            UsageError: ``voice`` is not a :class:`VoicePrint` of this book's length.
        """
        self._add(name, voice, min_speech_s=self.policy.min_enroll_speech_s)

    def load(self, name: str, voice: VoicePrint) -> None:
        """Add a saved voice (e.g. from ``speakers.dir``): the checks of :meth:`enroll` but not
        the minimum speech.

        Raises:
            EnrollmentError: ``BAD_SPEAKER_NAME``, ``DUPLICATE_SPEAKER``.
            UsageError: as :meth:`enroll`.
        """
        self._add(name, voice, min_speech_s=0.0)

    def _add(self, name: str, voice: VoicePrint, *, min_speech_s: float) -> None:
        name = check_speaker_name(name)
        if not isinstance(voice, VoicePrint):
            raise UsageError(f"a voice must be a VoicePrint, got {type(voice).__name__}")
        if name in self._enrolled:
            raise EnrollmentError(ErrorReason.DUPLICATE_SPEAKER, f"speaker {name!r} is already enrolled")
        if voice.speech_s < min_speech_s:
            raise EnrollmentError(ErrorReason.ENROLL_TOO_SHORT,
                                  f"{voice.speech_s:.1f} s of speech; enrolment needs at least {min_speech_s:.1f} s")
        self._check_dim(voice)
        self._enrolled[name] = voice
        self._matrix = np.stack([v.array() for v in self._enrolled.values()])

    @property
    def names(self) -> tuple[str, ...]:
        """The enrolled names, in enrolment order."""
        return tuple(self._enrolled)

    def voice(self, name: str) -> VoicePrint:
        """The enrolled voice print of ``name`` (to save it).

        Raises:
            KeyError: ``name`` is not enrolled.
        """
        return self._enrolled[name]

    def identify(self, voice: VoicePrint) -> SpeakerMatch:
        """The enrolled speaker nearest to ``voice``, or :data:`UNKNOWN` when none reaches
        ``identify_threshold``, none is enrolled, or ``voice`` rests on less than
        ``min_identify_speech_s`` of speech.  Auto labels play no part.

        Raises:
            UsageError: ``voice`` is of another length than the enrolled prints.
        """
        if self._matrix is None:
            return SpeakerMatch(UNKNOWN, 0.0)
        self._check_dim(voice)
        sims = self._matrix @ voice.array()
        best = int(np.argmax(sims))
        score = float(sims[best])
        if voice.speech_s < self.policy.min_identify_speech_s or score < self.policy.identify_threshold:
            return SpeakerMatch(UNKNOWN, _score(score))
        return SpeakerMatch(self.names[best], _score(score))

    # --- auto labels ---------------------------------------------------------------------

    @property
    def auto_labels(self) -> tuple[str, ...]:
        """The labels auto mode has opened so far: ``("S1", "S2", ...)``."""
        return tuple(f"S{i + 1}" for i in range(len(self._label_sums)))

    def auto(self, voice: VoicePrint) -> SpeakerMatch:
        """The label of ``voice`` by online clustering within this book (see the module
        docstring).  Enrolled speakers play no part.

        * cosine with the nearest centroid >= ``auto_threshold``: that label; the centroid
          moves (duration-weighted running mean);
        * ``voice`` shorter than ``min_identify_speech_s``: the nearest label, centroid
          unchanged, or :data:`UNKNOWN` (score 0.0) when there is none yet;
        * ``max_auto_labels`` labels open: the nearest label, centroid unchanged (an outlier
          should not drag a known voice);
        * else a new label ``S<n>`` (score 0.0).

        Raises:
            UsageError: ``voice`` is of another length than this book's prints.
        """
        self._check_dim(voice)
        vec = voice.array()
        short = voice.speech_s < self.policy.min_identify_speech_s
        if self._label_sums:
            cents = np.stack(self._label_sums)
            cents /= np.linalg.norm(cents, axis=1, keepdims=True)
            sims = cents @ vec
            best = int(np.argmax(sims))
            score = float(sims[best])
            label = f"S{best + 1}"
            if score >= self.policy.auto_threshold and not short:
                weight = max(voice.speech_s, 1e-3)
                self._label_sums[best] = self._label_sums[best] + weight * vec
                self._label_speech_s[best] += voice.speech_s
                return SpeakerMatch(label, _score(score))
            if short or len(self._label_sums) >= self.policy.max_auto_labels:
                return SpeakerMatch(label, _score(score))
        elif short:
            return SpeakerMatch(UNKNOWN, 0.0)
        self._label_sums.append(max(voice.speech_s, 1e-3) * vec)
        self._label_speech_s.append(voice.speech_s)
        return SpeakerMatch(f"S{len(self._label_sums)}", 0.0)

    def _check_dim(self, voice: VoicePrint) -> None:
        if not isinstance(voice, VoicePrint):
            raise UsageError(f"a voice must be a VoicePrint, got {type(voice).__name__}")
        if self._dim is None:
            self._dim = len(voice.vector)
        elif len(voice.vector) != self._dim:
            raise UsageError(f"voice print of length {len(voice.vector)}; this book holds length {self._dim}")
