"""Batch diarization bench (issue 14): DER, per-speaker time error, speakers found, RTF.

Files:

- ``multi/ami_excerpt_pyannote_dev00`` and ``multi/pyannote_sample`` (30 s each, 2 speakers)
  with their RTTM (``../shared/data/speech/multi``);
- synthetic conversations built reproducibly from ``../shared/data/speech/en`` (see
  :data:`CONVERSATIONS`): clips of different speakers in turn, separated by pauses drawn from
  a seeded RNG (0.3-1.0 s).  The reference turn of a clip is the clip with its leading and
  trailing silence trimmed (``librosa.effects.trim``, 35 dB below the clip's peak); pauses
  inside a clip count as speech, as in turn-level RTTMs;
- ``*_tel``: a conversation through an 8 kHz telephone band (soxr down to 8 kHz and back up to
  16 kHz, as the batch API will resample an 8 kHz upload).

Speech regions: the project's VAD, ``VadSegmenter(VadOptions())`` (WebRTC, default settings)
fed the whole file as 16 kHz s16le and flushed; a region is an utterance's
``(start_s, end_s)`` (first to last voiced frame).  ``--oracle`` also scores the RTTM's own
speech regions (a diarization-only figure, without VAD errors).

DER: ``pyannote.metrics.diarization.DiarizationErrorRate`` with ``skip_overlap=False``, at
collar 0.5 (pyannote's collar is the total width: 0.25 s on each side of every reference
boundary, NIST's usual setting) and collar 0.  Per-speaker time error: for every reference
speaker, |hypothesis total - reference total| in seconds after the optimal speaker mapping
(``optimal_mapping``; an unmapped reference speaker counts as 0 s found).

RTF: wall-clock seconds of the embedding stage and of the clustering+turns stage per second of
audio (``Diarizer.last_embed_s``/``last_cluster_s``), torch at ``--threads`` threads.

    .venv/bin/python bench/diarization_bench.py [--grid] [--oracle] [--threads 2] [--repeats 3] [--json out.json]

``--grid`` runs the window/hop/merge_cos settings of :data:`GRID` and prints the mean DER of
each; without it, the defaults of ``DiarizationOptions``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import machine_info  # noqa: E402
from whisper_streaming.analyzers.diarization import DiarizationOptions, Diarizer, speaker_summaries  # noqa: E402
from whisper_streaming.analyzers.speaker_embedding import SpeakerEmbedder  # noqa: E402
from whisper_streaming.pipeline.vad import VadOptions, VadSegmenter  # noqa: E402

SPEECH = ROOT.parent / "shared" / "data" / "speech"
RATE = 16000

#: name -> (speaker id -> clips of ../shared/data/speech/en, in the order spoken), turn order.
CONVERSATIONS: dict[str, tuple[dict[str, list[str]], str]] = {
    # 2 speakers: a LibriVox reader (Sense and Sensibility) and speechbrain's Harvard speaker 1
    "conv2": (
        {
            "librivox": [f"librivox_sense_and_sensibility_{n}" for n in ("0870", "0880", "0890", "0920", "0930")],
            "harvard1": [f"speechbrain_harvard_spk1_snt{n}" for n in range(1, 7)],
        },
        "ABABBABAABBA" + "B",
    ),
    # 1 speaker (a diarizer must not split one voice): the LibriVox reader alone
    "mono1": (
        {
            "librivox": [f"librivox_sense_and_sensibility_{n}" for n in ("0870", "0880", "0890", "0920", "0930")],
        },
        "AAAAA",
    ),
    # 3 speakers: the two above and speechbrain's Harvard speaker 2, LibriSpeech 61 joins too
    "conv3": (
        {
            "librivox": [f"librivox_sense_and_sensibility_{n}" for n in ("0870", "0880", "0890", "0920", "0930")],
            "harvard1": [f"speechbrain_harvard_spk1_snt{n}" for n in range(1, 7)],
            "harvard2": [f"speechbrain_harvard_spk2_snt{n}" for n in range(1, 7)],
        },
        "ABCBACCABCABBCACB",
    ),
}
TEL = ("conv2",)

#: (window_s, hop_s, merge_cos) tried with --grid.
GRID = [(w, h, m) for (w, h) in ((1.5, 0.75), (1.5, 0.5), (2.0, 1.0), (2.0, 0.5)) for m in (0.8, 0.875)]


@dataclass(frozen=True)
class BenchFile:
    name: str
    audio: np.ndarray  # float32, 16 kHz
    reference: list[tuple[float, float, str]]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            start, dur = float(parts[3]), float(parts[4])
            turns.append((start, start + dur, parts[7]))
    return turns


def load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != RATE:
        import soxr

        audio = soxr.resample(audio, rate, RATE).astype(np.float32)
    return audio


def build_conversation(name: str) -> BenchFile:
    import librosa

    speakers, order = CONVERSATIONS[name]
    ids = list(speakers)
    queues = {s: list(clips) for s, clips in speakers.items()}
    rng = np.random.default_rng(14)
    parts: list[np.ndarray] = [np.zeros(int(0.5 * RATE), np.float32)]
    t = 0.5
    ref = []
    for letter in order:
        spk = ids[ord(letter) - ord("A")]
        if not queues[spk]:
            continue
        clip = load(SPEECH / "en" / f"{queues[spk].pop(0)}.wav")
        _, (a, b) = librosa.effects.trim(clip, top_db=35)
        ref.append((t + a / RATE, t + b / RATE, spk))
        pause = float(rng.uniform(0.3, 1.0))
        parts += [clip, np.zeros(int(pause * RATE), np.float32)]
        t += len(clip) / RATE + int(pause * RATE) / RATE
    return BenchFile(name, np.concatenate(parts), ref)


def telephone(f: BenchFile) -> BenchFile:
    import soxr

    narrow = soxr.resample(f.audio, RATE, 8000)
    return BenchFile(f.name + "_tel", soxr.resample(narrow, 8000, RATE).astype(np.float32), f.reference)


def bench_files() -> list[BenchFile]:
    files = [BenchFile(p.stem, load(p.with_suffix(".wav")), read_rttm(p)) for p in sorted((SPEECH / "multi").glob("*.rttm")) if p.with_suffix(".wav").exists()]
    convs = [build_conversation(n) for n in CONVERSATIONS]
    return files + convs + [telephone(c) for c in convs if c.name in TEL]


def vad_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    seg = VadSegmenter(VadOptions())
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    utts = seg.feed(pcm) + seg.flush()
    return [(u.start_s, u.end_s) for u in utts]


def oracle_regions(ref: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    return [(s, e) for s, e, _ in ref]


class CachingEmbedder:
    """Embeds each distinct clip once (the threshold grid re-clusters the same windows)."""

    def __init__(self, inner: SpeakerEmbedder) -> None:
        self.inner = inner
        self.cache: dict[bytes, np.ndarray] = {}

    def embed_batch(self, audios):
        keys = [hashlib.blake2b(a.tobytes(), digest_size=16).digest() + len(a).to_bytes(8, "little") for a in audios]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            out = self.inner.embed_batch([audios[i] for i in todo])
            for i, e in zip(todo, out):
                self.cache[keys[i]] = e
        return np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, 192), np.float32)


def score(f: BenchFile, turns) -> dict:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(uri=f.name), Annotation(uri=f.name)
    for i, (s, e, spk) in enumerate(f.reference):
        ref[Segment(s, e), i] = spk
    uem = Timeline([Segment(0.0, f.duration_s)])
    for i, t in enumerate(turns):
        hyp[Segment(t.start_s, t.end_s), i] = t.speaker
    out = {}
    for collar in (0.5, 0.0):
        out[f"der_c{collar}"] = float(DiarizationErrorRate(collar=collar, skip_overlap=False)(ref, hyp, uem=uem))
    mapping = DiarizationErrorRate(collar=0.0, skip_overlap=False).optimal_mapping(ref, hyp)  # hyp -> ref
    inverse = {r: h for h, r in mapping.items()}
    hyp_total = {s.id: s.total_speech_s for s in speaker_summaries(turns)}
    errors = {}
    for spk in ref.labels():
        ref_s = ref.label_duration(spk)
        errors[spk] = {"ref_s": round(ref_s, 2), "hyp_s": round(hyp_total.get(inverse.get(spk, ""), 0.0), 2)}
        errors[spk]["abs_err_s"] = round(abs(errors[spk]["hyp_s"] - ref_s), 2)
    out["speakers_ref"] = len(ref.labels())
    out["speakers_found"] = len(hyp.labels())
    out["per_speaker"] = errors
    out["max_speaker_err_s"] = max(e["abs_err_s"] for e in errors.values())
    return out


def run(files, embedder, options: DiarizationOptions, *, oracle: bool) -> list[dict]:
    diarizer = Diarizer(embedder, options)
    rows = []
    for f in files:
        regions = oracle_regions(f.reference) if oracle else vad_regions(f.audio)
        turns = diarizer.diarize(f.audio, regions)
        row = {"file": f.name, "duration_s": round(f.duration_s, 2), "regions": "oracle" if oracle else "vad",
               "embed_rtf": diarizer.last_embed_s / f.duration_s, "cluster_rtf": diarizer.last_cluster_s / f.duration_s}
        row.update(score(f, turns))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| file | s | regions | spk ref/found | DER c0.25 | DER c0 | per-speaker |err| (s) | embed RTF | cluster RTF |",
             "|---|---:|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        per = ", ".join(f"{k} {v['hyp_s']:.1f}/{v['ref_s']:.1f}" for k, v in r["per_speaker"].items())
        lines.append(f"| {r['file']} | {r['duration_s']:.0f} | {r['regions']} | {r['speakers_ref']}/{r['speakers_found']} | "
                     f"{100 * r['der_c0.5']:.1f} % | {100 * r['der_c0.0']:.1f} % | {per} | {r['embed_rtf']:.3f} | {r['cluster_rtf']:.4f} |")
    mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
    lines.append(f"| **mean** | | | | **{100 * mean('der_c0.5'):.1f} %** | **{100 * mean('der_c0.0'):.1f} %** | max {max(r['max_speaker_err_s'] for r in rows):.1f} s | "
                 f"{mean('embed_rtf'):.3f} | {mean('cluster_rtf'):.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", action="store_true", help="try the settings of GRID")
    ap.add_argument("--oracle", action="store_true", help="also score with the RTTM's speech regions")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs of the defaults; RTF is their median")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    files = bench_files()
    t = time.perf_counter()
    embedder = SpeakerEmbedder(threads=args.threads)
    print(f"embedder loaded in {time.perf_counter() - t:.1f} s; {machine_info()}")
    report: dict = {"machine": machine_info(), "threads": args.threads}
    if args.grid:
        caching = CachingEmbedder(embedder)
        grid = []
        for window_s, hop_s, merge_cos in GRID:
            opts = replace(DiarizationOptions(), window_s=window_s, hop_s=hop_s, merge_cos=merge_cos)
            rows = run(files, caching, opts, oracle=False)
            der = statistics.mean(r["der_c0.5"] for r in rows)
            der0 = statistics.mean(r["der_c0.0"] for r in rows)
            found = " ".join(str(r["speakers_found"]) for r in rows)
            per_file = " ".join(f"{100 * r['der_c0.5']:.1f}" for r in rows)
            print(f"window {window_s} hop {hop_s} merge_cos {merge_cos}: mean DER c0.25 {100 * der:.1f} %  c0 {100 * der0:.1f} %  "
                  f"per file {per_file}  speakers {found}")
            grid.append({"window_s": window_s, "hop_s": hop_s, "merge_cos": merge_cos, "mean_der_c0.5": der, "mean_der_c0": der0, "rows": rows})
        report["grid"] = grid
    embedder.embed_batch([np.zeros(RATE * 3 // 2, np.float32)] * 4)  # warm-up: the first batch is slower
    rows = run(files, embedder, DiarizationOptions(), oracle=False)
    for _ in range(args.repeats - 1):  # the median RTF of the repeats (the host is shared: timings vary)
        again = run(files, embedder, DiarizationOptions(), oracle=False)
        for row, other in zip(rows, again):
            row.setdefault("embed_rtfs", [row["embed_rtf"]]).append(other["embed_rtf"])
            row.setdefault("cluster_rtfs", [row["cluster_rtf"]]).append(other["cluster_rtf"])
            assert row["der_c0.5"] == other["der_c0.5"]  # deterministic
    for row in rows:
        row["embed_rtf"] = statistics.median(row.get("embed_rtfs", [row["embed_rtf"]]))
        row["cluster_rtf"] = statistics.median(row.get("cluster_rtfs", [row["cluster_rtf"]]))
    if args.oracle:
        rows += run(files, embedder, DiarizationOptions(), oracle=True)
    print(f"defaults {DiarizationOptions()}")
    print(table([r for r in rows if r["regions"] == "vad"]))
    if args.oracle:
        print(table([r for r in rows if r["regions"] == "oracle"]))
    report["defaults"] = rows
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
