"""Analyses in the worker: audio-only analyzers run beside the transcription, the others after it."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np

from whisper_streaming.backends.worker import run_analyses, start_audio_analyses
from whisper_streaming.core.transcript import Transcript

TRANSCRIPT = Transcript("hello", "en", 1.0, (), 1.0)


class AudioOnly:
    name = "voice"
    audio_only = True

    def __init__(self) -> None:
        self.seen: list[object] = []
        self.thread: str | None = None

    def analyze(self, audio: np.ndarray, transcript: object) -> float:
        self.seen.append(transcript)
        self.thread = threading.current_thread().name
        return float(len(audio))


class NeedsText:
    name = "mood"

    def analyze(self, audio: np.ndarray, transcript: Transcript) -> str:
        return transcript.text.upper()


class Broken:
    name = "broken"
    audio_only = True

    def analyze(self, audio: np.ndarray, transcript: object) -> None:
        raise RuntimeError("boom")


def test_audio_only_analyses_run_beside_the_decode_and_the_rest_after_it() -> None:
    voice, mood = AudioOnly(), NeedsText()
    analyzers = {"voice": voice, "mood": mood, "broken": Broken()}
    audio = np.zeros(1600, dtype=np.float32)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="analysis") as pool:
        early = start_audio_analyses(pool, analyzers, frozenset({"voice", "mood", "broken"}), audio)
        assert set(early) == {"voice", "broken"}  # only the audio-only ones start before the transcript exists
        done = {name: f.result() for name, f in early.items()}
    annotations, seconds = run_analyses(analyzers, frozenset({"voice", "mood", "broken"}), audio, TRANSCRIPT, done)
    assert annotations == {"voice": 1600.0, "mood": "HELLO"}  # the broken one is left out, the rest go on
    assert voice.seen == [None] and voice.thread is not None and voice.thread.startswith("analysis")
    assert start_audio_analyses(pool, analyzers, frozenset({"mood"}), audio) == {}  # nothing audio-only asked for
