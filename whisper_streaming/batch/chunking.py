"""Cut a whole file into chunks for the workers: the streaming VAD finds the speech, and
consecutive utterances are merged into chunks of at most Whisper's 30 s window (pure).

The idea is faster-whisper's batched pipeline (``BatchedInferencePipeline``: VAD segments
merged up to ``chunk_length``, each chunk decoded on its own so that chunks run in parallel);
here the chunks are contiguous audio (from the first utterance's pre-roll to the last one's
trailing audio), so a time in a chunk plus the chunk's start is a time in the file, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from whisper_streaming.pipeline.vad import VadOptions, VadSegmenter

__all__ = ["SpeechRegion", "Chunk", "speech_regions", "merge_chunks", "MAX_CHUNK_S", "MAX_GAP_S"]

MAX_CHUNK_S = 30.0
"""Whisper's window (openai/whisper ``audio.py`` ``CHUNK_LENGTH``): a chunk is never longer."""

MAX_GAP_S = 4.0
"""Utterances further apart than this start a new chunk: a long pause inside a window is
where Whisper most often hallucinates (faster-whisper's batched pipeline splits there too)."""


@dataclass(frozen=True)
class SpeechRegion:
    """Speech found by the VAD: ``start_s``..``end_s`` is the voiced part, ``audio_start_s``..
    ``audio_end_s`` the utterance audio the streaming path would decode (pre-roll and trailing
    audio included).  Seconds from the start of the file."""

    start_s: float
    end_s: float
    audio_start_s: float
    audio_end_s: float


@dataclass(frozen=True)
class Chunk:
    """Contiguous audio ``start_s``..``end_s`` of the file (seconds) holding ``regions``."""

    index: int
    start_s: float
    end_s: float
    regions: tuple[SpeechRegion, ...]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def speech_regions(samples: np.ndarray, sample_rate_hz: int, options: VadOptions) -> list[SpeechRegion]:
    """The utterances the streaming VAD (``options``, the server's ``vad`` config) finds in a whole file.

    ``samples``: float32 mono in [-1, 1], shape ``(n,)``, at ``sample_rate_hz`` (which must be
    ``options.sample_rate_hz``).  The VAD's length cap (``max_speech_s``) cuts long speech in its
    longest pause near the cap, as on a stream.

    Raises:
        UsageError: from :class:`~whisper_streaming.pipeline.vad.VadSegmenter` (bad options, rate).
    """
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    segmenter = VadSegmenter(options)
    out = segmenter.feed(pcm) + segmenter.flush()
    rate = float(sample_rate_hz)
    return [SpeechRegion(u.start_s, u.end_s, u.audio_start_s, (u.audio_start_sample + len(u.samples)) / rate) for u in out]


def merge_chunks(regions: list[SpeechRegion], *, max_chunk_s: float = MAX_CHUNK_S, max_gap_s: float = MAX_GAP_S) -> list[Chunk]:
    """Merge consecutive ``regions`` into chunks of at most ``max_chunk_s`` seconds of audio,
    starting a new chunk at a pause longer than ``max_gap_s``.  A region longer than
    ``max_chunk_s`` by itself (a VAD cap above 30 s) is cut into pieces of ``max_chunk_s``."""
    chunks: list[Chunk] = []
    current: list[SpeechRegion] = []

    def close() -> None:
        if current:
            start = current[0].audio_start_s if not chunks else max(current[0].audio_start_s, chunks[-1].end_s)  # no audio in two chunks
            chunks.append(Chunk(len(chunks), start, max(start, current[-1].audio_end_s), tuple(current)))
            current.clear()

    for region in regions:
        pieces = [region]
        if region.audio_end_s - region.audio_start_s > max_chunk_s:
            pieces = []
            t = region.audio_start_s
            while t < region.audio_end_s:
                end = min(t + max_chunk_s, region.audio_end_s)
                pieces.append(SpeechRegion(max(t, region.start_s), min(end, region.end_s), t, end))
                t = end
        for piece in pieces:
            if current and (piece.audio_end_s - current[0].audio_start_s > max_chunk_s
                            or piece.audio_start_s - current[-1].audio_end_s > max_gap_s):
                close()
            current.append(piece)
    close()
    return chunks
