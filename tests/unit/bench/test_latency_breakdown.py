"""bench/latency_breakdown.py: the VAD timeline (offers, withdrawn offers) and the one-stream latency model."""

from __future__ import annotations

import numpy as np
import pytest

from bench.latency_breakdown import SEND_S, EngineTiming, UtteranceTiming, simulate, vad_timeline
from whisper_streaming.pipeline.vad import VadOptions, VadSegmenter

RATE = 16000
FRAME = 480


def _voiced(frame: bytes, rate: int) -> bool:
    return max(np.frombuffer(frame, dtype=np.int16)) > 100


def _stream(pattern: list[tuple[bool, int]]) -> np.ndarray:
    """Frames of noise (voiced) or zeros (unvoiced): ``(voiced, n_frames)`` runs."""
    rng = np.random.default_rng(0)
    parts = [rng.integers(-3000, 3000, n * FRAME).astype(np.int16) if v else np.zeros(n * FRAME, np.int16) for v, n in pattern]
    return np.concatenate(parts)


def _row(endpoint_s: float, offered_s: float | None, engine_s: float, speech_end_s: float = 1.0) -> UtteranceTiming:
    timing = EngineTiming(engine_s, engine_s / 2, engine_s / 3, 1, engine_s / 2, 1, False, "x.")
    return UtteranceTiming(0, "f", "silence", 2.0, 0.0, speech_end_s, speech_end_s + 0.18, endpoint_s, offered_s, timing)


def test_timeline_offers_at_trailing_end_and_records_withdrawn_offers() -> None:
    options = VadOptions(min_dynamic_range_db=None)
    # speech, a 300 ms pause (offered at 180 ms, withdrawn when speech resumes), speech, 1 s silence
    samples = _stream([(False, 20), (True, 30), (False, 10), (True, 30), (False, 40)])
    tl = vad_timeline(samples, VadSegmenter(options, is_speech=_voiced))
    assert len(tl.utterances) == 1
    u = tl.utterances[0]
    finals = [o for o in tl.offers if o.final_index == u.index]
    withdrawn = [o for o in tl.offers if o.final_index < 0]
    assert len(finals) == 1 and len(withdrawn) == 1
    assert finals[0].offered_sample - u.speech_end_sample == 6 * FRAME  # 180 ms trailing audio
    assert u.endpoint_sample - u.speech_end_sample == 16 * FRAME  # 480 ms endpoint
    assert withdrawn[0].offered_sample < u.speech_end_sample


def test_model_speculation_hides_the_endpoint_only_when_the_engine_is_fast() -> None:
    slow, fast = _row(1.48, 1.18, 0.5), _row(1.48, 1.18, 0.2)
    assert simulate([slow], [])[0].latency_s == pytest.approx(0.18 + 0.5 + SEND_S)
    assert simulate([fast], [])[0].latency_s == pytest.approx(0.48 + SEND_S)
    assert simulate([slow], [])[0].no_spec_latency_s == pytest.approx(0.48 + 0.5 + SEND_S)


def test_model_no_speculation_when_an_engine_is_busy_and_two_must_be_idle() -> None:
    # a withdrawn speculation started at 1.0 s runs 1.0 s: at the offer only one engine is idle
    m = simulate([_row(1.48, 1.18, 0.5)], [(1.0, 1.0)], idle_engines=2)[0]
    assert not m.speculated and m.queue_s == 0.0
    assert m.latency_s == pytest.approx(0.48 + 0.5 + SEND_S)
    # with one engine and two required nothing speculates: the confirmed utterance starts at the endpoint
    one_free = simulate([_row(1.48, 1.18, 0.5)], [], engines=1, idle_engines=2)[0]
    assert not one_free.speculated and one_free.latency_s == pytest.approx(0.48 + 0.5 + SEND_S)


def test_model_speculation_on_the_last_idle_engine_by_default() -> None:
    # the default (server.speculation_idle_engines 1): the other engine is idle at the offer
    m = simulate([_row(1.48, 1.18, 0.5)], [(1.0, 1.0)])[0]
    assert m.speculated and m.latency_s == pytest.approx(0.18 + 0.5 + SEND_S)
    # one engine, busy with the withdrawn job until 2.0 s: the offer at 1.18 s finds none idle
    busy = simulate([_row(1.48, 1.18, 0.5)], [(1.0, 1.0)], engines=1)[0]
    assert not busy.speculated and busy.queue_s == pytest.approx(2.0 - 1.48)
    one_free = simulate([_row(1.48, 1.18, 0.5)], [], engines=1)[0]
    assert one_free.speculated and one_free.latency_s == pytest.approx(0.18 + 0.5 + SEND_S)
