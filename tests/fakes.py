"""Fake ASR engines for pool tests; importable from ``spawn``-ed worker processes.

Workers import this module by name (``fakes``): pytest puts ``tests/`` on ``sys.path``
(rootdir-relative "prepend" import mode, there is no ``tests/__init__.py``) and
``multiprocessing``'s spawn start method hands the parent's ``sys.path`` to the child
before it unpickles the factory.

Utterances are tagged by their *first* sample (an int16).  Non-negative tags transcribe to
``"utt <tag>"`` after sleeping *second sample* milliseconds; negative tags trigger a
behaviour (see the constants), where the second sample is the id of the ``*_ONCE`` flag.

``EngineOptions.model`` is a directory (the test's ``tmp_path``): the engine appends one
line ``"<pid> <tag>"`` to ``calls.log`` there for every transcribe call (and to
``minimal.log`` for a call with ``minimal=True``, ``batch.log`` for a batch chunk), and keeps the ``*_ONCE`` flag files there.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable

import numpy as np

from whisper_streaming.engines.base import SAMPLE_RATE_HZ, EngineOptions

from whisper_streaming.core.transcript import Transcript, TranscriptSegment
from whisper_streaming.engines.decoding import AttemptOutcome, DecodeBudget, cut_loops, run_attempts
from whisper_streaming.analyzers.sentiment import Sentiment, SentimentOptions
from whisper_streaming.errors import TranscriptionStopped

CRASH = -1
"""The worker process exits (``os._exit(1)``) on every attempt."""
CRASH_ONCE = -2
"""The worker exits on the first attempt only (per flag id = second sample), then succeeds."""
HANG = -3
"""transcribe never returns."""
HANG_ONCE = -4
"""transcribe hangs on the first attempt only (per flag id = second sample), then succeeds."""
RAISE = -5
"""transcribe raises RuntimeError (the worker survives)."""
LOOP = -6
"""Every decode attempt loops (``"uh uh uh ..."``) and takes *second sample* ms: the engine runs
the real fallback policy (:func:`whisper_streaming.engines.decoding.run_attempts`) with the real time
budget of ``EngineOptions.limits``, as the faster-whisper engine does."""
SPIN = -7
"""transcribe burns *second sample* ms of its own CPU time (a busy loop on ``time.process_time``),
so a worker that is paused (``SIGSTOP``) takes longer by the time it was paused."""
STAGED = -8
"""An "encoder" of *second sample* ms, then ``should_stop`` is polled (a withdrawn job raises
:class:`~whisper_streaming.errors.TranscriptionStopped` and is logged to ``stopped.log``), then a
"decode" of :data:`STAGED_DECODE_S`; the text is ``text_for(STAGED)``."""
STAGED_DECODE_S = 3.0
SCREENED = -9
"""The engine's speech screen found no speech: an empty transcript with ``no_speech_screened``."""
SENTIMENT_RAISE = 1000
"""A normal utterance (``"utt 1000"``) on which the fake sentiment engine raises."""


def pcm(tag: int, arg: int = 0, n: int = 160) -> bytes:
    """``n`` s16le samples whose first is ``tag`` and second ``arg`` (rest zero).

    For a non-negative ``tag``, ``arg`` is how long (ms) the engine takes on it.
    """
    assert n >= 2
    return struct.pack("<hh", tag, arg) + bytes(2 * (n - 2))


def text_for(tag: int) -> str:
    """The transcript text the fake engine produces for a (successful) tag."""
    return f"utt {tag}"


def calls(flag_dir: str | os.PathLike[str], log_name: str = "calls.log") -> list[tuple[int, int]]:
    """``(pid, tag)`` of every transcribe call so far, in order (``"minimal.log"``: of the
    calls with ``minimal=True``)."""
    path = os.path.join(flag_dir, log_name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(int(a), int(b)) for a, b in (line.split() for line in f if line.strip())]


class FakeEngine:
    name = "fake"

    def __init__(self, options: EngineOptions) -> None:
        self.flag_dir = options.model
        self.limits = options.limits

    def _first_time(self, kind: str, flag_id: int) -> bool:
        """True (and records it) the first time ``kind``/``flag_id`` is seen, across processes."""
        path = os.path.join(self.flag_dir, f"{kind}-{flag_id}.flag")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def transcribe(self, audio: np.ndarray, *, language: object = None, minimal: bool = False, batch: object = None,
                   should_stop: Callable[[], bool] | None = None) -> Transcript:
        samples = np.round(audio * 32768.0).astype(np.int64)
        tag = int(samples[0])
        arg = int(samples[1])
        logs = ("calls.log",) + (("minimal.log",) if minimal else ()) + (("batch.log",) if batch is not None else ())
        for name in logs:
            with open(os.path.join(self.flag_dir, name), "a") as f:
                f.write(f"{os.getpid()} {tag}\n")
        if tag == CRASH or (tag == CRASH_ONCE and self._first_time("crash", arg)):
            os._exit(1)
        if tag == HANG or (tag == HANG_ONCE and self._first_time("hang", arg)):
            while True:
                time.sleep(3600)
        if tag == RAISE:
            raise RuntimeError("fake engine failure")
        if tag == LOOP:
            return self._looping(audio, arg / 1000)
        if tag == STAGED:
            time.sleep(arg / 1000)
            if should_stop is not None and should_stop():
                with open(os.path.join(self.flag_dir, "stopped.log"), "a") as f:
                    f.write(f"{os.getpid()} {tag}\n")
                raise TranscriptionStopped("withdrawn")
            time.sleep(STAGED_DECODE_S)
        if tag == SPIN:
            until = time.process_time() + arg / 1000
            while time.process_time() < until:
                pass
        if tag == SCREENED:
            return Transcript("", "", 0.0, (), len(audio) / SAMPLE_RATE_HZ, attempts=0, no_speech_screened=True)
        if tag >= 0 and arg > 0:
            time.sleep(arg / 1000)
        duration = len(audio) / SAMPLE_RATE_HZ
        segment = TranscriptSegment(0.0, duration, f"pid={os.getpid()}", -0.1, 0.01, 1.0)
        return Transcript(text_for(tag), "en", 1.0, (segment,), duration)


    def _looping(self, audio: np.ndarray, attempt_s: float) -> Transcript:
        duration = len(audio) / SAMPLE_RATE_HZ
        t0 = time.perf_counter()

        def attempt() -> AttemptOutcome[str]:
            time.sleep(attempt_s)
            text = " ".join(["uh"] * 200)
            return AttemptOutcome(text, text, -0.3, 1.5, 0.01, attempt_s)

        budget = DecodeBudget(self.limits.budget_s(duration))
        got = run_attempts([attempt] * 6, budget, log_prob_threshold=-1.0, compression_ratio_threshold=2.4, no_speech_threshold=0.6)
        segment = TranscriptSegment(0.0, duration, got.chosen.text, -0.3, 0.01, 1.5)
        return Transcript(cut_loops(got.chosen.text) if got.looped else got.chosen.text, "en", 1.0, (segment,), duration,
                          attempts=got.attempts, loops_seen=got.loops_seen, loop_cut=got.looped, timed_out=got.timed_out,
                          decode_s=time.perf_counter() - t0)


def make_engine(options: EngineOptions) -> FakeEngine:
    """A picklable engine factory."""
    return FakeEngine(options)


class PlainFakeEngine(FakeEngine):
    """An engine whose ``transcribe`` has no ``minimal`` keyword (an engine written before it)."""

    def transcribe(self, audio: np.ndarray, *, language: object = None) -> Transcript:  # type: ignore[override]
        return super().transcribe(audio, language=language)


def make_plain_engine(options: EngineOptions) -> PlainFakeEngine:
    return PlainFakeEngine(options)


def failing_factory(options: EngineOptions) -> FakeEngine:
    """Engine load failure: raises in the worker."""
    raise RuntimeError(f"cannot load fake model {options.model!r}")


def exiting_factory(options: EngineOptions) -> FakeEngine:
    """Engine load kills the worker process (e.g. a segfault in native code)."""
    os._exit(3)


SLOW_INIT_S = 1.0


def slow_init_factory(options: EngineOptions) -> FakeEngine:
    """Engine load that takes :data:`SLOW_INIT_S` seconds, then succeeds."""
    time.sleep(SLOW_INIT_S)
    return FakeEngine(options)


def pid_of(transcript: Transcript) -> int:
    """The worker pid the fake engine wrote into ``transcript``."""
    return int(transcript.segments[0].text.removeprefix("pid="))


def sentiment_score(pid: int) -> float:
    """The score the fake sentiment engine gives in the worker with ``pid``."""
    return (pid % 1000) / 1000


class FakeSentimentEngine:
    """Labels everything neutral with a score derived from its process id; raises on ``SENTIMENT_RAISE``."""

    name = "fake"
    languages = None

    def __init__(self, options: SentimentOptions) -> None:
        self.options = options

    def classify(self, text: str) -> Sentiment:
        if text == text_for(SENTIMENT_RAISE):
            raise RuntimeError("fake sentiment failure")
        time.sleep(0.001)
        return Sentiment("neutral", sentiment_score(os.getpid()))


def make_sentiment_engine(options: SentimentOptions) -> FakeSentimentEngine:
    return FakeSentimentEngine(options)


def failing_sentiment_factory(options: SentimentOptions) -> FakeSentimentEngine:
    raise RuntimeError("cannot load fake sentiment model")


class ProbeAnalyzer:
    """An analyzer that appends to ``<flag_dir>/probe.log`` each time it runs and annotates ``"probed"``."""

    name = "probe"

    def __init__(self, flag_dir: str) -> None:
        self.flag_dir = flag_dir

    def analyze(self, audio: np.ndarray, transcript: Transcript) -> str:
        with open(os.path.join(self.flag_dir, "probe.log"), "a") as f:
            f.write(f"{transcript.text}\n")
        return "probed"


def make_probe_analyzer(flag_dir: str) -> ProbeAnalyzer:
    return ProbeAnalyzer(flag_dir)


def slow_analysis(task: object) -> object:
    """An analysis (``batch.analysis.AnalysisProcess(fn=...)``) that takes 30 s; returns its pid first in a file."""
    import os as _os
    import time as _time

    with open(_os.environ.get("FAKE_ANALYSIS_PID_FILE", "/dev/null"), "w") as f:
        f.write(str(_os.getpid()))
    _time.sleep(30)
    return None
