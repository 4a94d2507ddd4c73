"""Every ``vad`` setting of the config reaches the segmenter's options."""

from __future__ import annotations

import dataclasses

from whisper_streaming.app.wiring import vad_options_from_config
from whisper_streaming.config.schema import load_config, with_overrides
from whisper_streaming.pipeline.vad import VadOptions


def test_the_config_defaults_are_the_segmenter_defaults() -> None:
    options = vad_options_from_config(load_config(None))
    assert options == VadOptions()


def test_each_vad_setting_is_passed_on() -> None:
    changed = {"vad.speculation_backoff_ms": 90, "vad.trailing_ms": 150, "vad.sentence_end_silence_frames": 8, "vad.silence_frames": 20}
    options = vad_options_from_config(with_overrides(load_config(None), **changed))
    assert dataclasses.asdict(options) == dataclasses.asdict(VadOptions(
        speculation_backoff_ms=90, trailing_ms=150, sentence_end_silence_frames=8, silence_frames=20))
