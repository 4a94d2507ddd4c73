"""Offline speaker diarization: who speaks when in a whole recording (the batch API, issue 14).

The caller gives the speech regions (``(start_s, end_s)`` from the project's VAD,
:class:`whisper_streaming.pipeline.vad.VadSegmenter`, or from Whisper's segments); this module
never looks for speech itself.  The recipe is the usual embed-and-cluster one (3D-Speaker's
``speakerlab/bin/infer_diarization.py``, senko's ``Diarizer``):

1. :func:`window_spans`: windows of ``window_s`` every ``hop_s`` inside each region, the last
   one flush with the region's end; a region shorter than a window is one window.
2. One speaker embedding per window (:class:`~whisper_streaming.analyzers.speaker_embedding.
   SpeakerEmbedder`, CAM++).
3. :func:`cluster_embeddings`: 3D-Speaker's spectral clustering of the windows at least
   ``min_cluster_window_s`` long (the number of speakers from the eigengap, at most
   ``max_speakers``, or exactly ``num_speakers``), tiny clusters folded into the nearest one,
   clusters with near-identical centroids merged; shorter windows, and the windows left out
   when there are more than ``max_cluster_windows`` (a long file: the eigendecomposition costs
   n^3), go to the nearest centroid.
4. :func:`turns_from_windows`: each instant of a region belongs to the window whose centre is
   nearest (the cut between two overlapping windows is the middle of their centres);
   same-speaker pieces that touch are merged; speakers are named ``SPEAKER_00``,
   ``SPEAKER_01``... in order of first appearance.

Overlapping speech gets one speaker (the nearest window's).  The clustering (spectral against
agglomerative with a cosine threshold), the window and the hop were chosen with
``bench/diarization_bench.py`` by the mean DER over its files (``docs/benchmarks.md``, "Batch
diarization").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from whisper_streaming.core.batch import SpeakerSummary, SpeakerTurn
from whisper_streaming.errors import UsageError

__all__ = [
    "DiarizationOptions",
    "Embedder",
    "Diarizer",
    "window_spans",
    "cluster_embeddings",
    "turns_from_windows",
    "speaker_summaries",
    "speaker_name",
]

log = logging.getLogger(__name__)

_SAMPLE_RATE_HZ = 16000


class Embedder(Protocol):
    """What :class:`Diarizer` needs of a speaker embedder (``SpeakerEmbedder`` or a fake)."""

    def embed_batch(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-norm embeddings, float32, shape ``(len(audios), dim)``."""
        ...


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class DiarizationOptions:
    """Settings of a :class:`Diarizer`; validated on construction (``UsageError``).

    Attributes:
        window_s: embedding window length in seconds (> 0).
        hop_s: step between window starts in seconds (0 < hop_s <= window_s).
        merge_cos: clusters whose centroids have at least this cosine similarity merge, in (0, 1].
        min_cluster_size: clusters of fewer windows are folded into the nearest other (>= 1).
        min_cluster_window_s: windows shorter than this (seconds) are not clustered, only
            assigned to the nearest centroid afterwards (a short window's embedding is noisy).
        max_cluster_windows: at most this many windows (evenly spread) are clustered; the others
            go to the nearest centroid (>= 10).
    """

    window_s: float = 1.5
    hop_s: float = 0.5
    merge_cos: float = 0.875
    min_cluster_size: int = 4
    min_cluster_window_s: float = 0.8
    max_cluster_windows: int = 2000

    def __post_init__(self) -> None:
        problems = []
        if not _finite(self.window_s) or self.window_s <= 0:
            problems.append(f"window_s must be > 0, got {self.window_s!r}")
        if not _finite(self.hop_s) or self.hop_s <= 0 or (_finite(self.window_s) and self.hop_s > self.window_s):
            problems.append(f"hop_s must be in (0, window_s], got {self.hop_s!r}")
        if not _finite(self.merge_cos) or not 0 < self.merge_cos <= 1:
            problems.append(f"merge_cos must be in (0, 1], got {self.merge_cos!r}")
        if not isinstance(self.min_cluster_size, int) or self.min_cluster_size < 1:
            problems.append(f"min_cluster_size must be an int >= 1, got {self.min_cluster_size!r}")
        if not _finite(self.min_cluster_window_s) or self.min_cluster_window_s < 0:
            problems.append(f"min_cluster_window_s must be >= 0, got {self.min_cluster_window_s!r}")
        if not isinstance(self.max_cluster_windows, int) or self.max_cluster_windows < 10:
            problems.append(f"max_cluster_windows must be an int >= 10, got {self.max_cluster_windows!r}")
        if problems:
            raise UsageError("; ".join(problems))


def speaker_name(index: int) -> str:
    """``0 -> "SPEAKER_00"`` (pyannote's naming)."""
    return f"SPEAKER_{index:02d}"


def _check_regions(regions: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for region in regions:
        try:
            start, end = float(region[0]), float(region[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise UsageError(f"a speech region must be (start_s, end_s), got {region!r}") from exc
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise UsageError(f"a speech region must have 0 <= start_s <= end_s, got {region!r}")
        if end > start:
            out.append((start, end))
    out.sort()
    merged: list[tuple[float, float]] = []
    for start, end in out:  # overlapping regions (e.g. Whisper segments) become one
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def window_spans(regions: Iterable[tuple[float, float]], window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Embedding windows ``(start_s, end_s)`` inside the speech regions, sorted by start.

    In a region longer than ``window_s`` windows start every ``hop_s`` and the last one ends at
    the region's end (it may overlap its predecessor more than the others); a region no longer
    than ``window_s`` is one window.  Regions are sorted and overlapping ones merged first;
    empty ones are skipped.  (senko ``Diarizer._generate_subsegments``.)

    Raises:
        UsageError: a region is not ``0 <= start_s <= end_s`` (finite), or ``window_s``/``hop_s``
            are not as in :class:`DiarizationOptions`.
    """
    DiarizationOptions(window_s=window_s, hop_s=hop_s)
    spans: list[tuple[float, float]] = []
    for start, end in _check_regions(regions):
        if end - start <= window_s:
            spans.append((start, end))
            continue
        t = start
        while t + window_s < end - 1e-9:
            spans.append((t, t + window_s))
            t += hop_s
        spans.append((end - window_s, end))
    return spans


def _centroids(embeddings: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    cents = np.stack([embeddings[labels == k].mean(axis=0) for k in range(n)])
    return cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    order: dict[int, int] = {}
    for label in labels.tolist():
        order.setdefault(label, len(order))
    return np.array([order[label] for label in labels.tolist()], dtype=np.int64)


def _spectral(x: np.ndarray, *, num_speakers: int | None, max_speakers: int, pval: float, min_neighbours: int) -> np.ndarray:
    """3D-Speaker's ``SpectralCluster`` (after speechbrain): cosine affinity, per row all but
    the largest ``max(n - int((1 - pval) n), min_neighbours)`` entries zeroed, symmetrised,
    unnormalised Laplacian, number of clusters at the largest eigengap among the first
    ``max_speakers + 1`` eigenvalues (or ``num_speakers``), k-means on the first k eigenvectors."""
    from sklearn.cluster import KMeans

    n = x.shape[0]
    affinity = x @ x.T
    n_zero = min(int((1 - pval) * n), n - min_neighbours)
    if n_zero > 0:
        low = np.argpartition(affinity, n_zero - 1, axis=1)[:, :n_zero]
        np.put_along_axis(affinity, low, 0.0, axis=1)
    affinity = 0.5 * (affinity + affinity.T)
    np.fill_diagonal(affinity, 0.0)
    laplacian = np.diag(np.abs(affinity).sum(axis=1)) - affinity
    eigenvalues, eigenvectors = np.linalg.eigh(laplacian)
    if num_speakers is not None:
        k = min(num_speakers, n)
    elif eigenvalues[min(max_speakers, n - 1)] <= 1e-6 * max(1.0, float(eigenvalues[-1])):
        # more than max_speakers connected components (the pruned graph falls apart, as in a
        # long file that repeats the same voices): the eigengap says nothing, take the cap and
        # let the centroid merge join what belongs together
        k = min(max_speakers, n)
    else:
        k = int(np.argmax(np.diff(eigenvalues[: max_speakers + 1]))) + 1
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    return np.asarray(KMeans(n_clusters=k, random_state=0, n_init=10).fit_predict(eigenvectors[:, :k]), dtype=np.int64)


def _fold_small(x: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Members of clusters smaller than ``min_size`` go to the nearest large cluster's centroid
    (3D-Speaker ``CommonClustering.filter_minor_cluster``)."""
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    large = np.flatnonzero(sizes >= min_size)
    if len(large) == 0:
        return np.zeros_like(labels)
    if len(large) == k:
        return labels
    cents = _centroids(x, labels, k)[large]
    out = labels.copy()
    small = ~np.isin(labels, large)
    out[small] = large[np.argmax(x[small] @ cents.T, axis=1)]
    return _compact(out)


def _merge_similar(x: np.ndarray, labels: np.ndarray, merge_cos: float) -> np.ndarray:
    """Merge the two clusters whose centroids are most similar while their cosine similarity is
    at least ``merge_cos`` (3D-Speaker ``CommonClustering.merge_by_cos``)."""
    labels = labels.copy()
    while labels.max() > 0:
        k = int(labels.max()) + 1
        sim = np.triu(_centroids(x, labels, k) @ _centroids(x, labels, k).T, 1)
        a, b = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[a, b] < merge_cos:
            break
        labels[labels == b] = a
        labels = _compact(labels)
    return labels


def cluster_embeddings(
    embeddings: np.ndarray,
    *,
    num_speakers: int | None = None,
    max_speakers: int = 8,
    merge_cos: float = 0.875,
    min_cluster_size: int = 4,
    min_windows: int = 10,
    pval: float = 0.012,
    min_neighbours: int = 6,
) -> np.ndarray:
    """One cluster label per embedding: int64, shape ``(n,)``, values ``0..k-1`` numbered in
    order of first appearance.

    ``embeddings``: float, shape ``(n, dim)``, unit norm.  The recipe and its defaults are
    3D-Speaker's (``speakerlab/process/cluster.py``, ``egs/3dspeaker/speaker-diarization/conf/
    diar.yaml``, also senko's ``cluster/conf/spectral.yaml``): spectral clustering (see
    :func:`_spectral`) with the number of speakers from the eigengap (at most
    ``max_speakers``), then clusters of fewer than ``min_cluster_size`` members folded into the
    nearest other, then clusters whose centroids' cosine similarity is at least ``merge_cos``
    merged.  Fewer than ``min_windows`` embeddings are one speaker.  With ``num_speakers``:
    exactly ``min(num_speakers, n)`` clusters (no folding or merging).

    Raises:
        UsageError: ``embeddings`` is not 2-D, ``num_speakers``/``max_speakers`` < 1.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise UsageError(f"embeddings must have shape (n, dim), got {x.shape}")
    if num_speakers is not None and (not isinstance(num_speakers, int) or num_speakers < 1):
        raise UsageError(f"num_speakers must be an int >= 1 or None, got {num_speakers!r}")
    if not isinstance(max_speakers, int) or max_speakers < 1:
        raise UsageError(f"max_speakers must be an int >= 1, got {max_speakers!r}")
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if num_speakers is not None:
        if min(num_speakers, n) == 1:
            return np.zeros(n, dtype=np.int64)
        if n <= num_speakers:
            return np.arange(n, dtype=np.int64)
        return _compact(_spectral(x, num_speakers=num_speakers, max_speakers=max_speakers, pval=pval, min_neighbours=min(min_neighbours, n - 1)))
    if n < min_windows or max_speakers == 1:
        return np.zeros(n, dtype=np.int64)
    labels = _compact(_spectral(x, num_speakers=None, max_speakers=max_speakers, pval=pval, min_neighbours=min(min_neighbours, n - 1)))
    labels = _fold_small(x, labels, min_cluster_size)
    return _merge_similar(x, labels, merge_cos)


def turns_from_windows(
    windows: Sequence[tuple[float, float]],
    labels: Sequence[int],
    regions: Iterable[tuple[float, float]],
) -> tuple[SpeakerTurn, ...]:
    """Speaker turns from labelled windows: sorted, non-overlapping, each inside one region.

    Each instant of a region belongs to the window (of those overlapping the region) whose
    centre is nearest; touching pieces of the same label merge; labels become ``SPEAKER_00``,
    ``SPEAKER_01``... in order of first appearance in time.  A region without any window
    gets no turn.

    Raises:
        UsageError: ``windows`` and ``labels`` differ in length, or a region is malformed.
    """
    if len(windows) != len(labels):
        raise UsageError(f"{len(windows)} windows but {len(labels)} labels")
    order = sorted(range(len(windows)), key=lambda i: (windows[i][0] + windows[i][1]) / 2)
    centres = np.array([(windows[i][0] + windows[i][1]) / 2 for i in order])
    starts = np.array([windows[i][0] for i in order])
    ends = np.array([windows[i][1] for i in order])
    lab = [int(labels[i]) for i in order]
    pieces: list[tuple[float, float, int]] = []
    for r_start, r_end in _check_regions(regions):
        inside = [j for j in range(len(order)) if starts[j] < r_end and ends[j] > r_start]
        if not inside:
            continue
        cuts = [r_start] + [min(max((centres[a] + centres[b]) / 2, r_start), r_end) for a, b in zip(inside, inside[1:])] + [r_end]
        for j, a, b in zip(inside, cuts, cuts[1:]):
            if b <= a:
                continue
            if pieces and pieces[-1][2] == lab[j] and abs(pieces[-1][1] - a) < 1e-9:
                pieces[-1] = (pieces[-1][0], b, lab[j])
            else:
                pieces.append((a, b, lab[j]))
    names: dict[int, str] = {}
    turns = []
    for a, b, label in pieces:
        name = names.setdefault(label, speaker_name(len(names)))
        turns.append(SpeakerTurn(start_s=round(float(a), 3), end_s=round(float(b), 3), speaker=name))
    return tuple(turns)


def speaker_summaries(turns: Iterable[SpeakerTurn]) -> tuple[SpeakerSummary, ...]:
    """Per speaker: total speech (sum of its turns' durations, seconds) and number of turns,
    sorted by speaker id."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for turn in turns:
        totals[turn.speaker] = totals.get(turn.speaker, 0.0) + (turn.end_s - turn.start_s)
        counts[turn.speaker] = counts.get(turn.speaker, 0) + 1
    return tuple(SpeakerSummary(id=s, total_speech_s=round(totals[s], 3), segments=counts[s]) for s in sorted(totals))


class Diarizer:
    """Windows -> embeddings -> clusters -> turns (see the module docstring).  Synchronous and
    CPU-bound: run it in a worker thread or process.  Not thread-safe (the embedder is not).

    Args:
        embedder: a loaded :class:`~whisper_streaming.analyzers.speaker_embedding.SpeakerEmbedder`
            (or anything with its ``embed_batch``); None loads one (``threads``).
        options: windows and clustering settings.
        threads: torch threads for an embedder loaded here (0: torch's default).

    Raises:
        ModelError: from loading the embedder.
    """

    def __init__(self, embedder: Embedder | None = None, options: DiarizationOptions = DiarizationOptions(), *, threads: int = 0) -> None:
        if not isinstance(options, DiarizationOptions):
            raise UsageError(f"options must be a DiarizationOptions, got {type(options).__name__}")
        if embedder is None:
            from whisper_streaming.analyzers.speaker_embedding import SpeakerEmbedder

            embedder = SpeakerEmbedder(threads=threads)
        self._embedder = embedder
        self.options = options
        self.last_embed_s = 0.0
        """Wall-clock seconds the last :meth:`diarize` spent computing embeddings."""
        self.last_cluster_s = 0.0
        """Wall-clock seconds the last :meth:`diarize` spent clustering and building turns."""

    def diarize(
        self,
        audio: np.ndarray,
        speech_regions: Iterable[tuple[float, float]],
        num_speakers: int | None = None,
        max_speakers: int = 8,
    ) -> tuple[SpeakerTurn, ...]:
        """Who speaks when.

        Args:
            audio: the whole recording, float32 mono 16 kHz in [-1, 1], shape ``(n,)``.
            speech_regions: ``(start_s, end_s)`` of speech, seconds from the start of
                ``audio`` (clipped to it; overlapping regions merge).
            num_speakers: exactly this many speakers (at most one per window), or None to
                decide from the eigengap.
            max_speakers: at most this many speakers when ``num_speakers`` is None.

        Returns:
            Turns sorted by time, non-overlapping, each inside a speech region, named
            ``SPEAKER_00``... in order of first appearance; empty without speech.

        Raises:
            UsageError: bad ``audio`` (not a 1-D float array), regions or speaker counts.
        """
        import time

        if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.dtype.kind != "f":
            raise UsageError(f"audio must be a 1-D float array (16 kHz mono), got {type(audio).__name__} {getattr(audio, 'shape', None)}")
        if num_speakers is not None and (not isinstance(num_speakers, int) or num_speakers < 1):
            raise UsageError(f"num_speakers must be an int >= 1 or None, got {num_speakers!r}")
        if not isinstance(max_speakers, int) or max_speakers < 1:
            raise UsageError(f"max_speakers must be an int >= 1, got {max_speakers!r}")
        duration_s = len(audio) / _SAMPLE_RATE_HZ
        regions = [(min(s, duration_s), min(e, duration_s)) for s, e in _check_regions(speech_regions)]
        regions = [(s, e) for s, e in regions if e > s]
        opts = self.options
        windows = window_spans(regions, opts.window_s, opts.hop_s)
        self.last_embed_s = self.last_cluster_s = 0.0
        if not windows:
            return ()
        t0 = time.perf_counter()
        clips = [audio[int(round(s * _SAMPLE_RATE_HZ)) : int(round(e * _SAMPLE_RATE_HZ))] for s, e in windows]
        embeddings = np.asarray(self._embedder.embed_batch(clips), dtype=np.float64)
        t1 = time.perf_counter()
        labels = self._labels(windows, embeddings, num_speakers, max_speakers)
        turns = turns_from_windows(windows, labels, regions)
        self.last_embed_s = t1 - t0
        self.last_cluster_s = time.perf_counter() - t1
        log.debug("diarized %.1f s: %d windows, %d speakers, embed %.2f s, cluster %.3f s", duration_s, len(windows),
                  len({t.speaker for t in turns}), self.last_embed_s, self.last_cluster_s)
        return turns

    def _labels(self, windows: list[tuple[float, float]], embeddings: np.ndarray, num_speakers: int | None, max_speakers: int) -> np.ndarray:
        opts = self.options
        chosen = np.array([i for i, (s, e) in enumerate(windows) if e - s >= opts.min_cluster_window_s - 1e-9], dtype=np.int64)
        if len(chosen) == 0:  # only short windows: cluster them all
            chosen = np.arange(len(windows))
        if len(chosen) > opts.max_cluster_windows:
            chosen = chosen[np.linspace(0, len(chosen) - 1, opts.max_cluster_windows).round().astype(np.int64)]
        labels = np.zeros(len(windows), dtype=np.int64)
        labels[chosen] = cluster_embeddings(
            embeddings[chosen], num_speakers=num_speakers, max_speakers=max_speakers,
            merge_cos=opts.merge_cos, min_cluster_size=opts.min_cluster_size,
        )
        rest = np.setdiff1d(np.arange(len(windows)), chosen)
        if len(rest):
            k = int(labels[chosen].max()) + 1
            cents = _centroids(embeddings[chosen], labels[chosen], k)
            labels[rest] = np.argmax(embeddings[rest] @ cents.T, axis=1)
        return labels
