"""Diarization logic with synthetic embeddings (no model): windows, clustering, turns, summaries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from whisper_streaming.analyzers.diarization import (
    DiarizationOptions,
    Diarizer,
    cluster_embeddings,
    speaker_summaries,
    turns_from_windows,
    window_spans,
)
from whisper_streaming.core.batch import SpeakerSummary, SpeakerTurn
from whisper_streaming.errors import UsageError

RATE = 16000
DIM = 192


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _clusters(sizes: Sequence[int], *, spread: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around len(sizes) random (nearly orthogonal) centres, interleaved in time."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((len(sizes), DIM)))
    truth = np.concatenate([np.full(n, k) for k, n in enumerate(sizes)])
    rng.shuffle(truth)
    x = _unit(centres[truth] + spread * rng.standard_normal((len(truth), DIM)) / np.sqrt(DIM) * 4)
    return x, truth


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a, b)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


class _ToneEmbedder:
    """Fake embedder: the 'voice' of a clip is the sign of its mean sample (speaker A > 0 > B);
    the embedding is that speaker's centre plus a little noise.  Counts the clips."""

    def __init__(self, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.centres = _unit(rng.standard_normal((2, DIM)))
        self.rng = rng
        self.calls = 0

    def embed_batch(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        self.calls += len(audios)
        out = []
        for a in audios:
            k = 0 if float(np.mean(a)) >= 0 else 1
            out.append(self.centres[k] + 0.05 * self.rng.standard_normal(DIM))
        return _unit(np.array(out, dtype=np.float32))


def _two_speaker_audio(change_s: float = 10.0, total_s: float = 20.0) -> np.ndarray:
    audio = np.full(int(total_s * RATE), 0.1, dtype=np.float32)
    audio[int(change_s * RATE):] = -0.1
    return audio


# ------------------------------------------------------------------ windows


def test_window_spans_cover_each_region_and_end_flush() -> None:
    spans = window_spans([(0.0, 4.0), (5.0, 5.6)], window_s=1.5, hop_s=0.5)
    assert spans[0] == (0.0, 1.5)
    assert all(b - a == pytest.approx(1.5) for a, b in spans[:-1])
    assert (3.5 - 1e-9) <= spans[-2][1] <= 4.0 and spans[-2] == pytest.approx((2.5, 4.0))
    assert spans[-1] == (5.0, 5.6)  # shorter than a window: one window
    assert spans == sorted(spans)
    assert all(0.0 <= a < b <= 4.0 or 5.0 <= a < b <= 5.6 for a, b in spans)


def test_window_spans_merge_overlapping_regions_and_skip_empty_ones() -> None:
    assert window_spans([(2.0, 3.0), (1.0, 2.5), (4.0, 4.0)], window_s=1.5, hop_s=0.75) == [(1.0, 2.5), (1.5, 3.0)]


@pytest.mark.parametrize("region", [(-1.0, 2.0), (3.0, 2.0), (0.0, float("nan")), ("a", 1.0), (1.0,)])
def test_window_spans_reject_bad_regions(region: object) -> None:
    with pytest.raises(UsageError):
        window_spans([region], window_s=1.5, hop_s=0.5)  # type: ignore[list-item]


@pytest.mark.parametrize("kwargs", [{"window_s": 0.0}, {"hop_s": 2.0}, {"merge_cos": 0.0}, {"min_cluster_size": 0}, {"max_cluster_windows": 5}])
def test_options_are_validated(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        DiarizationOptions(**kwargs)


# ------------------------------------------------------------------ clustering


def test_two_separated_clusters_give_two_speakers() -> None:
    x, truth = _clusters([20, 15])
    labels = cluster_embeddings(x)
    assert len(set(labels.tolist())) == 2
    assert _same_partition(labels, truth)
    assert labels[0] == 0  # numbered in order of first appearance


def test_three_clusters_are_found_without_a_count() -> None:
    x, truth = _clusters([15, 15, 12], seed=3)
    labels = cluster_embeddings(x)
    assert _same_partition(labels, truth)


def test_one_voice_stays_one_speaker() -> None:
    x, _ = _clusters([40], spread=0.4)
    assert set(cluster_embeddings(x).tolist()) == {0}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_num_speakers_forces_the_count(k: int) -> None:
    x, _ = _clusters([20, 15], seed=5)
    assert len(set(cluster_embeddings(x, num_speakers=k).tolist())) == k


def test_max_speakers_caps_the_count() -> None:
    x, _ = _clusters([12, 12, 12, 12], seed=7)
    assert len(set(cluster_embeddings(x).tolist())) == 4
    assert len(set(cluster_embeddings(x, max_speakers=2).tolist())) <= 2
    assert set(cluster_embeddings(x, max_speakers=1).tolist()) == {0}


def test_more_voices_than_the_cap_in_a_graph_that_falls_apart_give_the_cap_not_one() -> None:
    # 12 voices whose windows recur exactly (a long file that repeats itself): the pruned affinity
    # graph has 12 components, every eigenvalue up to the cap is 0 and the eigengap says nothing
    x, truth = _clusters([30] * 12, spread=0.0, seed=3)
    labels = cluster_embeddings(x, max_speakers=8)
    assert len(set(labels.tolist())) == 8
    assert len(set(cluster_embeddings(x, max_speakers=16).tolist())) == 12


def test_few_windows_are_one_speaker_unless_a_count_is_given() -> None:
    x, _ = _clusters([4, 4], seed=2)
    assert set(cluster_embeddings(x).tolist()) == {0}  # fewer than min_windows (10)
    assert len(set(cluster_embeddings(x, num_speakers=2).tolist())) == 2


def test_tiny_cluster_is_folded_into_a_large_one() -> None:
    x, truth = _clusters([20, 20, 2], seed=11)
    labels = cluster_embeddings(x, min_cluster_size=4)
    assert len(set(labels.tolist())) == 2
    assert len(set(cluster_embeddings(x, min_cluster_size=1).tolist())) == 3


def test_cluster_embeddings_rejects_bad_arguments() -> None:
    with pytest.raises(UsageError):
        cluster_embeddings(np.zeros(5))
    with pytest.raises(UsageError):
        cluster_embeddings(np.zeros((5, 3)), num_speakers=0)
    with pytest.raises(UsageError):
        cluster_embeddings(np.zeros((5, 3)), max_speakers=0)
    assert cluster_embeddings(np.zeros((0, 3))).shape == (0,)


# ------------------------------------------------------------------ turns


def _check_turns(turns: Sequence[SpeakerTurn], regions: Sequence[tuple[float, float]]) -> None:
    assert list(turns) == sorted(turns, key=lambda t: t.start_s)
    for a, b in zip(turns, turns[1:]):
        assert a.end_s <= b.start_s + 1e-9
        if a.speaker == b.speaker:
            assert a.end_s < b.start_s  # touching same-speaker pieces were merged
    for t in turns:
        assert t.end_s > t.start_s
        assert any(s - 1e-9 <= t.start_s and t.end_s <= e + 1e-9 for s, e in regions)


def test_turns_cut_at_the_middle_of_window_centres() -> None:
    windows = [(0.0, 1.5), (0.5, 2.0), (1.0, 2.5), (1.5, 3.0)]
    turns = turns_from_windows(windows, [3, 3, 1, 1], [(0.0, 3.0)])
    assert turns == (SpeakerTurn(0.0, 1.5, "SPEAKER_00"), SpeakerTurn(1.5, 3.0, "SPEAKER_01"))


def test_turns_stay_inside_regions_and_are_renamed_by_first_appearance() -> None:
    regions = [(0.0, 3.0), (4.0, 6.0), (7.0, 7.5)]
    windows = window_spans(regions, 1.5, 0.5)
    labels = [5 if a < 3.5 else 2 if a < 6.5 else 5 for a, _ in windows]
    turns = turns_from_windows(windows, labels, regions)
    _check_turns(turns, regions)
    assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert [(t.start_s, t.end_s) for t in turns] == [(0.0, 3.0), (4.0, 6.0), (7.0, 7.5)]


def test_turns_need_one_label_per_window() -> None:
    with pytest.raises(UsageError):
        turns_from_windows([(0.0, 1.0)], [0, 1], [(0.0, 1.0)])


def test_summaries_sum_the_turns() -> None:
    turns = (SpeakerTurn(0.0, 1.5, "SPEAKER_00"), SpeakerTurn(2.0, 4.25, "SPEAKER_01"), SpeakerTurn(5.0, 6.0, "SPEAKER_00"))
    assert speaker_summaries(turns) == (SpeakerSummary("SPEAKER_00", 2.5, 2), SpeakerSummary("SPEAKER_01", 2.25, 1))
    assert speaker_summaries(()) == ()


# ------------------------------------------------------------------ Diarizer with a fake embedder


def test_diarizer_finds_the_change_of_speaker() -> None:
    embedder = _ToneEmbedder()
    diarizer = Diarizer(embedder)
    regions = [(0.5, 9.0), (9.5, 19.5)]
    turns = diarizer.diarize(_two_speaker_audio(change_s=10.0), regions)
    _check_turns(turns, regions)
    assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01"]
    assert turns[0] == SpeakerTurn(0.5, 9.0, "SPEAKER_00")
    assert turns[1].start_s == 9.5 and turns[1].end_s == 19.5
    summaries = speaker_summaries(turns)
    assert sum(s.total_speech_s for s in summaries) == pytest.approx(sum(b - a for a, b in regions))
    assert embedder.calls == len(window_spans(regions, 1.5, 0.5))


def test_diarizer_change_inside_one_region_is_cut_within_a_hop() -> None:
    turns = Diarizer(_ToneEmbedder()).diarize(_two_speaker_audio(change_s=10.0), [(0.0, 20.0)])
    assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01"]
    assert turns[0].end_s == turns[1].start_s
    assert abs(turns[0].end_s - 10.0) <= 0.5 + 1e-9


def test_diarizer_one_region_one_voice_is_one_speaker() -> None:
    audio = np.full(8 * RATE, 0.1, dtype=np.float32)
    turns = Diarizer(_ToneEmbedder()).diarize(audio, [(1.0, 7.0)])
    assert turns == (SpeakerTurn(1.0, 7.0, "SPEAKER_00"),)


def test_diarizer_num_speakers_and_clipping() -> None:
    audio = _two_speaker_audio(change_s=10.0)
    turns = Diarizer(_ToneEmbedder()).diarize(audio, [(0.0, 25.0)], num_speakers=1)
    assert {t.speaker for t in turns} == {"SPEAKER_00"}
    assert turns[-1].end_s == 20.0  # regions are clipped to the audio
    three = Diarizer(_ToneEmbedder()).diarize(audio, [(0.0, 20.0)], num_speakers=3)
    assert len({t.speaker for t in three}) == 3


def test_diarizer_without_speech_returns_nothing() -> None:
    embedder = _ToneEmbedder()
    assert Diarizer(embedder).diarize(np.zeros(RATE, np.float32), []) == ()
    assert embedder.calls == 0


@pytest.mark.parametrize("audio", [np.zeros(10, np.int16), np.zeros((2, 10), np.float32), [0.0] * 10])
def test_diarizer_rejects_bad_audio(audio: object) -> None:
    with pytest.raises(UsageError):
        Diarizer(_ToneEmbedder()).diarize(audio, [(0.0, 0.0005)])  # type: ignore[arg-type]


def test_diarizer_rejects_bad_counts() -> None:
    with pytest.raises(UsageError):
        Diarizer(_ToneEmbedder()).diarize(np.zeros(RATE, np.float32), [(0.0, 1.0)], num_speakers=0)
    with pytest.raises(UsageError):
        Diarizer(_ToneEmbedder()).diarize(np.zeros(RATE, np.float32), [(0.0, 1.0)], max_speakers=0)
