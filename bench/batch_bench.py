"""Batch analysis of a long recording: wall time and real-time factor of each stage, WER, DER.

Builds a recording of at least ``--minutes`` (default 10) from ``../shared/data/speech/en``
(every file with a reference, in order, cycled, 0.8 s of silence between files; each file's
speaker is known from its name, so the speaker turns are known by construction), then runs
the server's batch machinery in this process (:class:`whisper_streaming.app.batch_local.LocalBatch`:
the worker pool of ``--config``, the batch transcriber, the analysis process) with word
timestamps, diarization and acoustic features, as ``POST /v1/jobs`` with ``diarize=true&features=true``
would.  Reports the total wall time, each stage's seconds and RTF, the corpus WER (Whisper's
English normalizer) and the DER (``pyannote.metrics``, collar 0.5 s total, overlap scored)
with the number of speakers found against the true number.

Usage: ``.venv/bin/python bench/batch_bench.py [--minutes 10] [--config config_vad.yaml] [--no-analysis]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEFAULT_AUDIO_DIR, corpus_error_rate, load_dir, machine_info  # noqa: E402
from whisper_streaming.app.batch_local import LocalBatch  # noqa: E402
from whisper_streaming.batch.request import BatchRequest  # noqa: E402

GAP_S = 0.8
RATE = 16000


def speaker_of(name: str) -> str:
    """The speaker of a shared English file, from its name (LibriSpeech speaker id, Harvard spk1/2, ...)."""
    m = re.match(r"librispeech_[a-z-]+_(\d+)-", name)
    if m:
        return f"libri{m.group(1)}"
    m = re.match(r"speechbrain_harvard_(spk\d)", name)
    if m:
        return f"harvard_{m.group(1)}"
    return name.split("_")[0]  # librivox (one reader), pocketsphinx, jfk ...


def build(minutes: float) -> tuple[np.ndarray, list[tuple[float, float, str]], str]:
    files = [f for f in load_dir(DEFAULT_AUDIO_DIR) if f.reference]
    parts, turns, refs, t = [], [], [], 0.0
    gap = np.zeros(int(GAP_S * RATE), dtype=np.float32)
    i = 0
    while t < minutes * 60:
        f = files[i % len(files)]
        audio = np.frombuffer(f.pcm, dtype="<i2").astype(np.float32) / 32768.0
        turns.append((t, t + len(audio) / RATE, speaker_of(f.name)))
        refs.append(f.reference or "")
        parts += [audio, gap]
        t += (len(audio) + len(gap)) / RATE
        i += 1
    return np.concatenate(parts), turns, " ".join(refs)


def der(truth: list[tuple[float, float, str]], found: list[tuple[float, float, str]]) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for a, b, s in truth:
        ref[Segment(a, b)] = s
    for a, b, s in found:
        hyp[Segment(a, b)] = s
    return float(DiarizationErrorRate(collar=0.5, skip_overlap=False)(ref, hyp))


async def main(args: argparse.Namespace) -> dict[str, object]:
    samples, truth, reference = build(args.minutes)
    duration_s = len(samples) / RATE
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        sf.write(path, samples, RATE, subtype="PCM_16")
        request = BatchRequest(word_timestamps=True, diarize=not args.no_analysis, features=not args.no_analysis)
        t0 = time.perf_counter()
        async with LocalBatch(args.config) as batch:
            load_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            result = await batch.transcribe(path, request, lambda p, s: None)
            total_s = time.perf_counter() - t1
    _, wer = corpus_error_rate([(reference, result.text)], "en")
    out: dict[str, object] = {
        "machine": machine_info(),
        "audio_s": round(duration_s, 1),
        "files": len(truth),
        "speakers_true": len({s for _, _, s in truth}),
        "model_load_s": round(load_s, 1),
        "total_s": round(total_s, 1),
        "rtf_total": round(total_s / duration_s, 4),
        "stages": [{"stage": t.stage, "seconds": round(t.seconds, 1), "rtf": round(t.rtf, 4)} for t in result.timings],
        "wer": round(wer, 4),
        "segments": len(result.segments),
        "words": sum(len(s.words) for s in result.segments),
    }
    if request.diarize:
        out["speakers_found"] = len(result.speakers)
        out["der"] = round(der(truth, [(t.start_s, t.end_s, t.speaker) for t in result.turns]), 4)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--no-analysis", action="store_true", help="transcription only (no diarization, no features)")
    report = asyncio.run(main(parser.parse_args()))
    print(json.dumps(report, indent=2))
