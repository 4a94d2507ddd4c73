"""Whole-file chunking: the streaming VAD's utterances merged into chunks of at most 30 s."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from whisper_streaming.batch.chunking import MAX_CHUNK_S, SpeechRegion, merge_chunks, speech_regions
from whisper_streaming.pipeline.vad import VadOptions

DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "data"


def region(a: float, b: float) -> SpeechRegion:
    return SpeechRegion(a, b, a - 0.2, b + 0.3)


def test_close_utterances_share_a_chunk_and_no_chunk_passes_30_s():
    regions = [region(1 + 5 * i, 4 + 5 * i) for i in range(12)]  # 12 utterances, 2 s pauses, 60 s in all
    chunks = merge_chunks(regions)
    assert [len(c.regions) for c in chunks] == [6, 6]  # a seventh would make the first 34 s long
    assert all(c.duration_s <= MAX_CHUNK_S for c in chunks)
    assert [r for c in chunks for r in c.regions] == regions  # every utterance once, in order
    assert chunks[0].start_s == pytest.approx(0.8)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_s >= a.end_s  # no audio in two chunks


def test_a_long_pause_starts_a_new_chunk():
    chunks = merge_chunks([region(1, 3), region(10, 12)], max_gap_s=4.0)
    assert [len(c.regions) for c in chunks] == [1, 1]
    assert len(merge_chunks([region(1, 3), region(5, 7)], max_gap_s=4.0)) == 1


def test_a_region_longer_than_the_window_is_cut_into_window_sized_pieces():
    chunks = merge_chunks([SpeechRegion(0.0, 70.0, 0.0, 70.0)])
    assert [round(c.duration_s, 6) for c in chunks] == [30.0, 30.0, 10.0]
    assert chunks[-1].end_s == 70.0


def test_overlapping_utterance_audio_is_never_in_two_chunks():
    a = SpeechRegion(0.0, 29.0, 0.0, 29.5)
    b = SpeechRegion(29.6, 31.0, 29.2, 31.3)  # its pre-roll starts before a's trailing audio ends
    chunks = merge_chunks([a, b])
    assert len(chunks) == 2 and chunks[1].start_s == chunks[0].end_s == 29.5


def test_no_speech_gives_no_chunks():
    assert merge_chunks([]) == []
    assert speech_regions(np.zeros(16000 * 3, dtype=np.float32), 16000, VadOptions()) == []


def test_speech_regions_of_real_speech_lie_inside_the_file_in_order():
    samples, rate = sf.read(DATA / "jfk.wav", dtype="float32")
    regions = speech_regions(samples, rate, VadOptions())
    assert regions
    duration = len(samples) / rate
    assert all(0 <= r.audio_start_s <= r.start_s < r.end_s <= r.audio_end_s <= duration + 1e-6 for r in regions)
    assert all(a.end_s <= b.start_s for a, b in zip(regions, regions[1:]))
    assert sum(r.end_s - r.start_s for r in regions) > 0.6 * duration  # JFK speaks most of the 11 s
