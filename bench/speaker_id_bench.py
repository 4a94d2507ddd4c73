"""Speaker identification bench (issue 15): accuracy, false accepts, EER, auto labels, latency.

Data (``../shared/data/speech``; nothing of it is shipped):

- ``en/``: each file through the project's VAD (``VadSegmenter(VadOptions())``), one test
  utterance per VAD utterance, the audio exactly as a worker gets it (pre-roll and trailing
  silence included).  Speaker from the file name: ``speechbrain_harvard_spk1/2`` (two speakers),
  the LibriVox reader (``librivox_*``, one reader), each LibriSpeech speaker id, JFK;
  ``pocketsphinx_*`` (speakers not documented) serve only as impostors.
- ``multi/*.rttm`` + wav: the RTTM turns with overlapping speech removed, pieces of at most
  :data:`PIECE_S` (longer turns are cut), at least 0.5 s.
- ``ko/``: one speaker per file (emotiontts ``ada``, ``kih``, ``lmy``; picovoice's test file),
  cut into pieces of :data:`KO_PIECE_S`.

Scenarios (closed and open set): two speakers enrolled from their first utterances (their
voice prints merged with :func:`merge_voiceprints`, as an enrolment stream is) until at least
``enrol_s`` of speech (at most :data:`MAX_ENROL_S`: a longer utterance is cut there); every other
utterance of theirs is identified (attribution accuracy), and every utterance of a speaker not
enrolled must come out ``unknown`` (false-accept rate; impostors: all other speakers of all
datasets).  EER: over all pairs of utterances of known speakers within a dataset, and over the
utterance-vs-enrolled-print trials of each scenario.  Auto mode: :meth:`SpeakerBook.auto` over
each two-speaker stream in speaking order; labels found and the share of utterances under the
label mapped one-to-one to their speaker (Hungarian).

Latency: :class:`SpeakerAnalyzer` (CAM++, torch 1 thread) on 1, 3, 5, 10 s of speech, median of
``--repeats`` after a warm-up.

``--embedder resemblyzer`` (measurement only, issue 15): the same analyzer and scoring with
resemblyzer's GE2E ``VoiceEncoder`` (:class:`ResemblyzerEmbedder`, bundled weights, CPU) instead
of CAM++; its thresholds are swept over a wider grid (0.20-0.99: its embeddings are non-negative,
so cosines run high).  resemblyzer is not a project dependency: ``pip install --no-deps
resemblyzer`` into the venv to run it.

    .venv/bin/python bench/speaker_id_bench.py [--threads 2] [--repeats 7] [--json out.json]
        [--embedder campplus|resemblyzer]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import machine_info  # noqa: E402
from whisper_streaming.analyzers.speaker_id import (  # noqa: E402
    SpeakerAnalyzer,
    SpeakerAnalyzerOptions,
    VoiceEmbedder,
    create_speaker_embedder,
)
from whisper_streaming.client.audio_files import load_pcm16  # noqa: E402
from whisper_streaming.core.speakers import UNKNOWN, SpeakerBook, SpeakerPolicy, VoicePrint, merge_voiceprints  # noqa: E402
from whisper_streaming.core.transcript import Transcript  # noqa: E402
from whisper_streaming.pipeline.vad import VadOptions, VadSegmenter  # noqa: E402

SPEECH = ROOT.parent / "shared" / "data" / "speech"
RATE = 16000
PIECE_S = 2.0
KO_PIECE_S = 1.0
MAX_ENROL_S = 5.0
EMPTY = Transcript("", "", 0.0, (), 1.0)


class ResemblyzerEmbedder:
    """resemblyzer's GE2E speaker encoder (Wan et al. 2018, "Generalized end-to-end loss for
    speaker verification"; 3-layer LSTM, 256-d, weights bundled in the wheel, ~17 MB) behind the
    :class:`VoiceEmbedder` interface.  ``embed``: ``preprocess_wav`` (volume normalisation to
    -30 dBFS, webrtcvad removal of long silences), then ``embed_utterance`` (mean of 1.6 s
    partials, unit norm); float32 ``(256,)``.  When the preprocessing leaves under 0.1 s (noise
    the VAD rejects), the volume-normalised audio is embedded instead (counted in ``fallbacks``).
    Sets torch's intra-op threads for the process (the analyzer does so only for CAM++).
    """

    def __init__(self, threads: int) -> None:
        import torch
        from resemblyzer import VoiceEncoder

        torch.set_num_threads(threads)
        self._encoder = VoiceEncoder("cpu", verbose=False)
        self.fallbacks = 0

    def embed(self, audio: np.ndarray) -> np.ndarray:
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import normalize_volume

        wav = preprocess_wav(np.asarray(audio, dtype=np.float32), RATE)
        if len(wav) < RATE // 10:
            self.fallbacks += 1
            wav = normalize_volume(np.asarray(audio, dtype=np.float32), -30, increase_only=True)
        return np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)


def resemblyzer_factory(options: SpeakerAnalyzerOptions) -> VoiceEmbedder:
    """A :class:`ResemblyzerEmbedder` at ``options.threads`` torch threads (the analyzer's embedder_factory)."""
    return ResemblyzerEmbedder(options.threads)


EMBEDDERS = {"campplus": create_speaker_embedder, "resemblyzer": resemblyzer_factory}


@dataclass(frozen=True)
class Utt:
    dataset: str
    speaker: str  # "" = unknown identity (impostor only)
    name: str
    audio: np.ndarray  # float32 16 kHz


def f32(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def en_speaker(stem: str) -> str:
    if stem.startswith("speechbrain_harvard_spk"):
        return "harvard" + stem[len("speechbrain_harvard_spk")]
    if stem.startswith("librivox_"):
        return "librivox"
    if stem.startswith("librispeech_"):
        return "ls" + stem.split("_")[2].split("-")[0]
    if stem.startswith("jfk"):
        return "jfk"
    return ""


def vad_utterances(audio16: np.ndarray) -> list[np.ndarray]:
    seg = VadSegmenter(VadOptions())
    utts = seg.feed(audio16) + seg.flush()
    return [f32(np.asarray(u.samples)) for u in utts]


def load_en() -> list[Utt]:
    out = []
    for path in sorted((SPEECH / "en").iterdir()):
        if path.suffix not in (".wav", ".flac"):
            continue
        for k, audio in enumerate(vad_utterances(load_pcm16(path))):
            out.append(Utt("en", en_speaker(path.stem), f"{path.stem}#{k}", audio))
    return out


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            turns.append((float(parts[3]), float(parts[3]) + float(parts[4]), parts[7]))
    return turns


def exclusive_turns(turns: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Each turn minus the parts where another speaker talks too."""
    out = []
    for i, (s, e, spk) in enumerate(turns):
        pieces = [(s, e)]
        for j, (s2, e2, spk2) in enumerate(turns):
            if j == i or spk2 == spk:
                continue
            nxt = []
            for a, b in pieces:
                if e2 <= a or s2 >= b:
                    nxt.append((a, b))
                    continue
                if s2 > a:
                    nxt.append((a, s2))
                if e2 < b:
                    nxt.append((e2, b))
            pieces = nxt
        out += [(a, b, spk) for a, b in pieces]
    return sorted(out)


def cut(start_s: float, end_s: float, piece_s: float, min_s: float) -> list[tuple[float, float]]:
    spans = []
    t = start_s
    while end_s - t >= min_s:
        spans.append((t, min(end_s, t + piece_s)))
        t += piece_s
    return spans


def load_multi() -> list[Utt]:
    out = []
    for rttm in sorted((SPEECH / "multi").glob("*.rttm")):
        audio = f32(load_pcm16(rttm.with_suffix(".wav")))
        ds = rttm.stem.split("_")[0]
        for s, e, spk in exclusive_turns(read_rttm(rttm)):
            for a, b in cut(s, e, PIECE_S, 0.5):
                out.append(Utt(ds, f"{ds}:{spk}", f"{rttm.stem}@{a:.2f}", audio[int(a * RATE):int(b * RATE)]))
    return out


def load_ko() -> list[Utt]:
    out = []
    for path in sorted((SPEECH / "ko").glob("*.wav")):
        audio = f32(load_pcm16(path))
        spk = path.stem.split("_")[-1][:3] if path.stem.startswith("emotiontts") else "picovoice"
        for a, b in cut(0.0, len(audio) / RATE, KO_PIECE_S, 0.7):
            out.append(Utt("ko", f"ko:{spk}", f"{path.stem}@{a:.1f}", audio[int(a * RATE):int(b * RATE)]))
    return out


# (name, enrolled speakers, enrolment target seconds, auto-mode stream speakers)
SCENARIOS = [
    ("en harvard1+2", ("harvard1", "harvard2"), 4.0),
    ("en librivox+harvard1", ("librivox", "harvard1"), 4.0),
    ("ami MEE009+MEE012", ("ami:MEE009", "ami:MEE012"), 4.0),
    ("pyannote 90+91", ("pyannote:speaker90", "pyannote:speaker91"), 4.0),
    ("ko ada+kih", ("ko:ada", "ko:kih"), 3.0),
]


def embed_all(analyzer: SpeakerAnalyzer, utts: list[Utt]) -> dict[str, VoicePrint | None]:
    return {u.name: analyzer.analyze(u.audio, EMPTY) for u in utts}


def enrol(analyzer: SpeakerAnalyzer, utts: list[Utt], target_s: float) -> tuple[VoicePrint, set[str]]:
    """Merge the speaker's first utterances until target_s of speech (cut at MAX_ENROL_S)."""
    prints, used, total = [], set(), 0.0
    for u in utts:
        audio = u.audio
        vp = analyzer.analyze(audio, EMPTY)
        if vp is None:
            continue
        if total + vp.speech_s > MAX_ENROL_S:
            keep = int((MAX_ENROL_S - total) * RATE) + int(0.3 * RATE)
            vp = analyzer.analyze(audio[:keep], EMPTY)
            if vp is None:
                break
        prints.append(vp)
        used.add(u.name)
        total += vp.speech_s
        if total >= target_s:
            break
    return merge_voiceprints(prints), used


def eer(target: list[float], nontarget: list[float]) -> tuple[float, float]:
    """(EER, threshold at the EER) by sweeping every score as the threshold."""
    t = np.asarray(target)
    n = np.asarray(nontarget)
    best = (1.0, 0.0)
    gap_best = 2.0
    for thr in np.unique(np.concatenate([t, n])):
        frr = float(np.mean(t < thr))
        far = float(np.mean(n >= thr))
        if abs(frr - far) < gap_best:
            gap_best = abs(frr - far)
            best = ((frr + far) / 2, float(thr))
    return best


def cos(a: VoicePrint, b: VoicePrint) -> float:
    return float(a.array() @ b.array())


def hungarian_accuracy(truth: list[str], labels: list[str]) -> float:
    from scipy.optimize import linear_sum_assignment

    ts = sorted(set(truth))
    ls = sorted(set(labels))
    m = np.zeros((len(ts), len(ls)))
    for t, lab in zip(truth, labels):
        m[ts.index(t), ls.index(lab)] += 1
    r, c = linear_sum_assignment(-m)
    return float(m[r, c].sum() / len(truth))


def run_accuracy(analyzer: SpeakerAnalyzer, utts: list[Utt], grid: np.ndarray) -> dict:
    prints = embed_all(analyzer, utts)
    by_spk: dict[str, list[Utt]] = {}
    for u in utts:
        if u.speaker and prints[u.name] is not None:
            by_spk.setdefault(u.speaker, []).append(u)
    res: dict = {"scenarios": {}, "pairs": {}}
    # pairwise EER within each dataset
    for ds in sorted({u.dataset for u in utts}):
        items = [(u.speaker, prints[u.name]) for u in utts if u.dataset == ds and u.speaker and prints[u.name] is not None]
        tgt, non = [], []
        for (s1, p1), (s2, p2) in itertools.combinations(items, 2):
            (tgt if s1 == s2 else non).append(cos(p1, p2))
        e, thr = eer(tgt, non)
        res["pairs"][ds] = {"utts": len(items), "speakers": len({s for s, _ in items}), "target": len(tgt), "nontarget": len(non),
                            "eer": e, "eer_threshold": thr, "target_mean": float(np.mean(tgt)), "nontarget_mean": float(np.mean(non)),
                            "target_min": float(np.min(tgt)), "nontarget_max": float(np.max(non))}
    for name, enrolled, target_s in SCENARIOS:
        books = {}
        used_all: set[str] = set()
        for spk in enrolled:
            vp, used = enrol(analyzer, by_spk[spk], target_s)
            books[spk] = vp
            used_all |= used
        tests = [u for spk in enrolled for u in by_spk[spk] if u.name not in used_all]
        impostors = [u for u in utts if u.speaker not in enrolled and prints[u.name] is not None]
        t_scores = [[cos(prints[u.name], books[s]) for s in enrolled] for u in tests]
        i_scores = [max(cos(prints[u.name], books[s]) for s in enrolled) for u in impostors]
        tgt = [row[enrolled.index(u.speaker)] for row, u in zip(t_scores, tests)]
        non = [row[k] for row, u in zip(t_scores, tests) for k, s in enumerate(enrolled) if s != u.speaker]
        non_all = non + [cos(prints[u.name], books[s]) for u in impostors for s in enrolled]
        e, thr = eer(tgt, non_all)
        closed = float(np.mean([enrolled[int(np.argmax(row))] == u.speaker for row, u in zip(t_scores, tests)]))
        same_ds_imp = [max(cos(prints[u.name], books[s]) for s in enrolled) for u in impostors if u.dataset == tests[0].dataset]
        curve = []
        for t in grid:
            acc = float(np.mean([enrolled[int(np.argmax(row))] == u.speaker and max(row) >= t for row, u in zip(t_scores, tests)]))
            far = float(np.mean([s >= t for s in i_scores]))
            far_ds = float(np.mean([s >= t for s in same_ds_imp])) if same_ds_imp else float("nan")
            curve.append((float(t), acc, far, far_ds))
        res["scenarios"][name] = {"enrolled": list(enrolled), "enrol_s": [round(books[s].speech_s, 2) for s in enrolled],
                                  "tests": len(tests), "impostors": len(impostors), "same_dataset_impostors": len(same_ds_imp),
                                  "closed_set_accuracy": closed, "eer": e, "eer_threshold": thr, "curve": curve,
                                  "target_min": float(min(tgt)), "impostor_max": float(max(i_scores)),
                                  "speakers": list(enrolled), "stream": [(u.speaker, u.name) for u in sorted(tests + [u for spk in enrolled for u in by_spk[spk] if u.name in used_all], key=lambda u: u.name)]}
    return {"res": res, "prints": prints, "by_spk": by_spk}


def stream_order(by_spk: dict[str, list[Utt]], speakers: tuple[str, ...], utts: list[Utt]) -> list[Utt]:
    """Speaking order: RTTM files by time; others alternate speakers."""
    mine = [u for s in speakers for u in by_spk[s]]
    if mine[0].dataset in ("ami", "pyannote"):
        return sorted(mine, key=lambda u: float(u.name.split("@")[1]))
    queues = [list(by_spk[s]) for s in speakers]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def run_auto(prints: dict[str, VoicePrint | None], by_spk: dict[str, list[Utt]], utts: list[Utt], grid: np.ndarray) -> dict:
    out = {}
    for name, enrolled, _ in SCENARIOS:
        stream = [u for u in stream_order(by_spk, enrolled, utts) if prints[u.name] is not None]
        rows = []
        for t in grid:
            book = SpeakerBook(SpeakerPolicy(identify_threshold=0.5, auto_threshold=float(t)))
            labels = [book.auto(prints[u.name]).label for u in stream]  # type: ignore[arg-type]
            truth = [u.speaker for u in stream]
            kept = [(tr, lab) for tr, lab in zip(truth, labels) if lab != UNKNOWN]
            acc = hungarian_accuracy([k[0] for k in kept], [k[1] for k in kept]) * len(kept) / len(truth)
            rows.append((float(t), len(book.auto_labels), acc))
        out[name] = {"utterances": len(stream), "rows": rows}
    return out


def latency(repeats: int, embedder_factory: Callable[[SpeakerAnalyzerOptions], VoiceEmbedder] = create_speaker_embedder) -> dict:
    audio = f32(load_pcm16(SPEECH / "en" / "jfk_inaugural_1961.wav"))
    lib = f32(load_pcm16(SPEECH / "en" / "librispeech_dev-clean_2412-153948-0000.flac"))
    long = np.concatenate([audio, lib])
    t0 = time.perf_counter()
    analyzer = SpeakerAnalyzer(SpeakerAnalyzerOptions(threads=1), embedder_factory=embedder_factory)
    analyzer.warm_up()
    first = time.perf_counter() - t0
    noise = np.random.default_rng(1).normal(0, 0.01, RATE).astype(np.float32)
    t0 = time.perf_counter()
    analyzer.analyze(noise, EMPTY)
    noise_s = time.perf_counter() - t0
    out = {"first_call_s": first, "noise_1s_after_ms": noise_s * 1000, "by_length": {}}
    for secs in (1, 3, 5, 10):
        x = long[RATE: RATE + secs * RATE]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            analyzer.analyze(x, EMPTY)
            times.append(time.perf_counter() - t0)
        out["by_length"][secs] = {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the accuracy part")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--embedder", choices=sorted(EMBEDDERS), default="campplus",
                    help="campplus (the package's CAM++) or resemblyzer (GE2E; measurement only)")
    args = ap.parse_args()
    factory = EMBEDDERS[args.embedder]
    utts = load_en() + load_multi() + load_ko()
    top = 0.81 if args.embedder == "campplus" else 1.0
    grid = np.round(np.arange(0.20, top, 0.01), 2)
    report: dict = {"machine": machine_info(), "utterances": len(utts)}
    if args.embedder != "campplus":
        report["embedder"] = args.embedder
    for label, trim in (("whole", False), ("trimmed", True)):
        analyzer = SpeakerAnalyzer(SpeakerAnalyzerOptions(threads=args.threads, embed_trimmed=trim), embedder_factory=factory)
        acc = run_accuracy(analyzer, utts, grid)
        auto = run_auto(acc["prints"], acc["by_spk"], utts, grid)
        report[label] = {"accuracy": acc["res"], "auto": auto}
        r = acc["res"]
        print(f"== {label}")
        if args.embedder != "campplus":
            print(f"preprocessing fallbacks (under 0.1 s left): {getattr(analyzer._embedder, 'fallbacks', None)}")
        for ds, p in r["pairs"].items():
            print(f"pairs {ds:9s} utts {p['utts']:3d} spk {p['speakers']:2d} EER {100 * p['eer']:5.1f} % at {p['eer_threshold']:.3f} "
                  f"target mean {p['target_mean']:.2f} min {p['target_min']:.2f} non mean {p['nontarget_mean']:.2f} max {p['nontarget_max']:.2f}")
        for name, s in r["scenarios"].items():
            print(f"{name:22s} enrol {s['enrol_s']} tests {s['tests']:3d} imp {s['impostors']:3d} closed {100 * s['closed_set_accuracy']:5.1f} % "
                  f"EER {100 * s['eer']:5.1f} % at {s['eer_threshold']:.3f} target min {s['target_min']:.3f} impostor max {s['impostor_max']:.3f}")
        print("thr  mean_acc  mean_FAR  mean_FAR_same_ds   | auto: mean acc, labels per stream")
        for k, t in enumerate(grid):
            accs = [s["curve"][k][1] for s in r["scenarios"].values()]
            fars = [s["curve"][k][2] for s in r["scenarios"].values()]
            fds = [s["curve"][k][3] for s in r["scenarios"].values() if s["curve"][k][3] == s["curve"][k][3]]
            aacc = [a["rows"][k][2] for a in auto.values()]
            alab = [a["rows"][k][1] for a in auto.values()]
            print(f"{t:.2f} {100 * np.mean(accs):6.1f} {100 * np.mean(fars):6.1f} {100 * np.mean(fds):6.1f}   "
                  f"| {100 * np.mean(aacc):6.1f} {alab}  acc {[round(100 * a, 0) for a in aacc]} FAR {[round(100 * f, 1) for f in fars]} acc {[round(100 * a, 0) for a in accs]}")
    if not args.skip_latency:
        lat = latency(args.repeats, factory)
        report["latency"] = lat
        print(f"latency: first call (load + warm-up) {lat['first_call_s']:.2f} s, 1 s noise after {lat['noise_1s_after_ms']:.1f} ms")
        for secs, v in lat["by_length"].items():
            print(f"  {secs:2d} s: median {v['median_ms']:.1f} ms, min {v['min_ms']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
