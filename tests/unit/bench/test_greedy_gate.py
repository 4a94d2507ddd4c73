"""bench/greedy_gate.py: the gate applied to recorded decodes (which text, what it costs)."""

from __future__ import annotations

import pytest

from bench.greedy_gate import REDECODE_SHARE, UtteranceDecodes, VariantDecodes, gate_rows, greedy_kept


def _u(logprob: float | None, clean: bool = True, greedy: str = "a cat", beam: str = "the cat") -> UtteranceDecodes:
    return UtteranceDecodes(2.0, greedy, logprob, clean, 0.1, beam, 0.2)


def test_the_gate_keeps_only_clean_confident_greedy_decodes() -> None:
    assert greedy_kept(_u(-0.2), -0.3)
    assert not greedy_kept(_u(-0.4), -0.3)
    assert not greedy_kept(_u(-0.1, clean=False), -0.3)  # a fallback or retry ran: not trusted
    assert not greedy_kept(_u(None), float("-inf"))  # no segment at all
    assert not greedy_kept(_u(-0.1), None)  # None: the beam decode only


def test_rows_pick_the_texts_and_model_the_cost() -> None:
    variant = VariantDecodes("en", "orig", "the cat sat", "en", 10.0, [_u(-0.2, greedy="the cat", beam="the cat"),
                                                                      _u(-0.9, greedy="sad", beam="sat")])
    never, gated = gate_rows([variant], (None, -0.5))
    assert never.wer["en/orig"] == 0.0 and never.kept_share == 0.0
    assert never.asr_per_audio_s["en"] == pytest.approx((0.2 + 0.2) / 10.0)
    assert gated.wer["en/orig"] == 0.0 and gated.kept_share == 0.5  # the confident one kept, the other redone
    assert gated.asr_per_audio_s["en"] == pytest.approx((0.1 + 0.1 + REDECODE_SHARE * 0.2) / 10.0)
    (always,) = gate_rows([variant], (float("-inf"),))
    assert always.wer["en/orig"] == pytest.approx(1 / 3) and always.mean_wer["en"] == pytest.approx(1 / 3)
