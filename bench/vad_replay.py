#!/usr/bin/env python3
"""Streaming WER without the clock: replay a session through the VAD and the engine in-process.

Builds exactly the audio one ``bench/stream_bench.py`` session sends (every file of the
directory, 1.0 s of silence between files, 2.0 s after the last), cuts it with the server's
:class:`~whisper_streaming.pipeline.vad.VadSegmenter` (same config), transcribes each utterance in
order with the same engine and decode options, and prints the corpus WER.  The server cuts
the same utterances from the same samples and decodes them the same way, so this is the
streaming WER of a one-stream benchmark run (identical transcripts), in seconds instead of
minutes: the tool for tuning endpointing and decoding options for accuracy.  Latency is not
measured here.

``--sample-rate 8000`` replays the files as an 8 kHz stream (``%o sample_rate=8000``): the
VAD runs at 8 kHz and each utterance is resampled to 16 kHz before the engine, as the server
does (``Transcribe.asr_samples``).  The core (:func:`session_audio`, :func:`replay`,
:func:`transcribe_utterance`) is importable; ``bench/generalization.py`` uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, SpeechFile, corpus_error_rate, load_dir, machine_info  # noqa: E402
from whisper_streaming.core import audio_format  # noqa: E402
from whisper_streaming.app.wiring import engine_options_from_config  # noqa: E402
from whisper_streaming.engines.base import AsrEngine, pcm16_to_float32  # noqa: E402
from whisper_streaming.core.transcript import Transcript  # noqa: E402
from whisper_streaming.engines.registry import create_engine  # noqa: E402
from whisper_streaming.config.schema import load_config  # noqa: E402
from whisper_streaming.core.language import LanguageTracker  # noqa: E402
from whisper_streaming.app.wiring import language_policy_from_config, vad_options_from_config  # noqa: E402
from whisper_streaming.pipeline.vad import Utterance, VadOptions, VadSegmenter  # noqa: E402

GAP_S = 1.0
TAIL_S = 2.0
RATE = 16000


@dataclass(frozen=True)
class ReplayedUtterance:
    """One utterance of a replay and what the engine made of it."""

    utterance: Utterance
    text: str
    asr_s: float


@dataclass(frozen=True)
class Replay:
    """A replayed session: its utterances in order, the ASR time and the session length."""

    utterances: list[ReplayedUtterance]
    asr_s: float
    audio_s: float
    file_spans: list[tuple[int, int]]  # [start, end) sample of each file in the session audio

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances if u.text)


def session_audio(files: list[SpeechFile]) -> tuple[npt.NDArray[np.int16], list[tuple[int, int]]]:
    """One session's int16 samples (at the files' rate): every file, ``GAP_S`` of digital
    silence between files and ``TAIL_S`` after the last; plus each file's ``[start, end)``."""
    rate = files[0].sample_rate_hz if files else RATE
    pcm, spans, pos = bytearray(), [], 0
    for i, f in enumerate(files):
        if f.sample_rate_hz != rate:
            raise ValueError(f"{f.name}: {f.sample_rate_hz} Hz in a {rate} Hz session")
        n = len(f.pcm) // 2
        spans.append((pos, pos + n))
        silence = int(rate * (GAP_S if i < len(files) - 1 else TAIL_S))
        pcm += f.pcm + b"\x00\x00" * silence
        pos += n + silence
    return np.frombuffer(bytes(pcm), dtype="<i2").astype(np.int16), spans


def transcribe_utterance(engine: AsrEngine, utterance: Utterance, language: LanguageTracker) -> Transcript:
    """The engine call the server makes for one utterance: its samples resampled to 16 kHz
    (``Transcribe.asr_samples``), as float32 (``pool.py``), with the stream's language state
    (the session's :class:`LanguageTracker`), which the transcript then updates when it has text
    (``Session.transcription_done``)."""
    samples = audio_format.resample(utterance.samples, utterance.sample_rate_hz, audio_format.ASR_SAMPLE_RATE_HZ)
    transcript = engine.transcribe(pcm16_to_float32(samples), language=language.request())
    if transcript.text.strip():  # as the session: noise or hold music must not set the language
        language.observe(transcript.language, transcript.language_probability, utterance.duration_s)
    return transcript


def replay(files: list[SpeechFile], engine: AsrEngine, vad_options: VadOptions, language: LanguageTracker) -> Replay:
    """Cut the session audio of ``files`` with a :class:`VadSegmenter` at the files' rate
    (``vad_options`` with that ``sample_rate_hz``) and transcribe every utterance in order
    (with ``language``, the stream's language state, as the server keeps it)."""
    samples, spans = session_audio(files)
    rate = files[0].sample_rate_hz if files else RATE
    if vad_options.sample_rate_hz != rate:
        vad_options = dataclasses.replace(vad_options, sample_rate_hz=rate)
    segmenter = VadSegmenter(vad_options)
    utterances = segmenter.feed(samples) + segmenter.flush()
    out, t_asr = [], 0.0
    for u in utterances:
        t0 = time.perf_counter()
        transcript = transcribe_utterance(engine, u, language)
        elapsed = time.perf_counter() - t0
        t_asr += elapsed
        out.append(ReplayedUtterance(u, transcript.text, elapsed))
    return Replay(out, t_asr, len(samples) / rate, spans)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    p.add_argument("--files", type=int, default=None)
    p.add_argument("--language", default="en", help="language of the references (WER, or CER for ko/ja/zh)")
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config_vad.yaml")
    p.add_argument("--sample-rate", type=int, default=RATE, choices=audio_format.SAMPLE_RATES_HZ,
                   help="stream rate: the files are read at this rate and the VAD runs at it (default 16000)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--verbose", action="store_true", help="print every utterance")
    args = p.parse_args()
    files = [f for f in load_dir(args.audio_dir, limit=args.files, sample_rate_hz=args.sample_rate) if f.reference]
    config = load_config(args.config)
    engine = create_engine(engine_options_from_config(config))
    tracker = LanguageTracker(config.model.language, language_policy_from_config(config))
    result = replay(files, engine, vad_options_from_config(config), tracker)
    if args.verbose:
        for ru in result.utterances:
            u = ru.utterance
            print(f"{u.start_s:7.2f} {u.end_s:7.2f} {u.end_reason.value:10s} {ru.text}")
    texts = [u.text for u in result.utterances]
    metric, total = corpus_error_rate([(" ".join(f.reference or "" for f in files), " ".join(t for t in texts if t))], args.language)
    audio_s = result.audio_s
    report = {"machine": machine_info(), "config": config.model_dump(mode="json"), "audio_dir": str(args.audio_dir),
              "sample_rate_hz": args.sample_rate, metric: total, "utterances": len(texts), "rtf": result.asr_s / audio_s, "texts": texts}
    out = args.out or Path(__file__).resolve().parent / "results" / f"vad_replay-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"| files | utterances | streaming {metric.upper()} (replay) | ASR RTF (one process) |\n|---:|---:|---:|---:|\n"
          f"| {len(files)} | {len(texts)} | {total:.3f} | {result.asr_s / audio_s:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
