"""Every ``vad`` setting of the config reaches the segmenter's options."""

from __future__ import annotations

import dataclasses

from whisper_streaming.app.wiring import vad_options_from_config
from whisper_streaming.config.schema import load_config, with_overrides
from whisper_streaming.config.vad import VadConfig
from whisper_streaming.pipeline.vad import VadOptions

CHANGED = {
    "mode": 2, "silence_frames": 20, "max_speech_s": 12.0, "preroll_ms": 400, "start_window_frames": 12,
    "start_voiced_frames": 4, "min_speech_ms": 200, "trailing_ms": 150, "speculation_backoff_ms": 90,
    "sentence_end_silence_frames": 8, "silence_floor_dbfs": -70.0, "digital_silence_peak": 6, "digital_silence_frames": 10,
    "agc_target_dbfs": -25.0, "agc_max_gain_db": 40.0, "agc_window_ms": 8000, "min_dynamic_range_db": 3.0,
}
"""A valid value other than the default for every ``vad`` setting (a new setting must be added here)."""


def test_the_config_defaults_are_the_segmenter_defaults() -> None:
    assert vad_options_from_config(load_config(None)) == VadOptions()


def test_each_vad_setting_is_passed_on() -> None:
    assert set(CHANGED) == set(VadConfig.model_fields)
    defaults = VadConfig()
    assert all(getattr(defaults, name) != value for name, value in CHANGED.items())
    options = vad_options_from_config(with_overrides(load_config(None), **{f"vad.{k}": v for k, v in CHANGED.items()}))
    assert dataclasses.asdict(options) == dataclasses.asdict(VadOptions(**CHANGED))
