"""Saved voices (config speakers.dir): round trip, names that sanitize alike, path safety, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from whisper_streaming.core.speakers import VoicePrint
from whisper_streaming.sinks.voices import VoiceStore


def voice(seed: int) -> VoicePrint:
    return VoicePrint.from_array(np.random.default_rng(seed).standard_normal(192), 4.2)


def test_a_saved_voice_loads_back_and_is_replaced_only_when_allowed(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path / "voices")
    path = store.save("alice", voice(1))
    assert path.parent == (tmp_path / "voices").resolve() and path.stat().st_mode & 0o777 == 0o640
    got = store.load("alice")
    assert got is not None and got.speech_s == 4.2 and np.allclose(got.array(), voice(1).array(), atol=1e-6)
    assert store.save("alice", voice(2)) is None  # a saved voice is kept: nobody overwrites it by enrolling its name
    assert np.allclose(store.load("alice").array(), voice(1).array(), atol=1e-6)  # type: ignore[union-attr]
    VoiceStore(tmp_path / "voices", replace=True).save("alice", voice(2))  # speakers.replace_saved
    assert np.allclose(store.load("alice").array(), voice(2).array(), atol=1e-6)  # type: ignore[union-attr]
    assert store.load("bob") is None
    assert [p.name for p in store.directory.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("names", [("José", "Jos_"), ("민수", "지영"), ("a.b", "a_b")])
def test_names_that_sanitize_alike_never_share_a_file(tmp_path: Path, names: tuple[str, str]) -> None:
    store = VoiceStore(tmp_path)
    a, b = names
    assert store.path_for(a) != store.path_for(b)
    store.save(a, voice(1))
    store.save(b, voice(2))
    assert np.allclose(store.load(a).array(), voice(1).array(), atol=1e-6)  # type: ignore[union-attr]
    assert np.allclose(store.load(b).array(), voice(2).array(), atol=1e-6)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["../etc/passwd", "..", "/abs", "a/../../b", "..\\x"])
def test_a_hostile_name_stays_inside_the_directory(tmp_path: Path, name: str) -> None:
    store = VoiceStore(tmp_path / "v")
    path = store.path_for(name)
    assert path.parent == store.directory and not path.name.startswith(".")


def test_a_broken_or_foreign_file_is_no_voice(tmp_path: Path) -> None:
    store = VoiceStore(tmp_path)
    path = store.save("alice", voice(1))
    path.write_text("{not json", encoding="utf-8")
    assert store.load("alice") is None
    path.write_text(json.dumps({"name": "mallory", "vector": [1.0] * 192, "speech_s": 4.0}), encoding="utf-8")
    assert store.load("alice") is None  # the file of another name
    path.write_text(json.dumps({"name": "alice", "vector": [0.0] * 192, "speech_s": 4.0}), encoding="utf-8")
    assert store.load("alice") is None  # a zero vector is not a voice
