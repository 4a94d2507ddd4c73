"""Test helpers: shipped speech files, silence, normalized WER."""

from __future__ import annotations

from pathlib import Path

import jiwer
import numpy as np
from whisper_normalizer.english import EnglishTextNormalizer

from whisper_streaming.audio import load_pcm16

DATA = Path(__file__).parent / "data"
_normalize = EnglishTextNormalizer()

# A short socket timeout so the idle-timeout test is quick; small max_connections for SERVER_TOO_BUSY.
E2E_CONFIG = """\
network:
  socket_timeout: 4
  handshake_timeout_s: 2
model:
  language: en
  channel: 1
server:
  max_connections: 4
  shutdown_timeout_s: 30
"""


def normalized_wer(reference: str, hypothesis: str) -> float:
    """WER after Whisper's English text normalizer (jiwer)."""
    return jiwer.wer(_normalize(reference), _normalize(hypothesis) or "<empty>")


def speech_files() -> list[Path]:
    return sorted(p for p in DATA.glob("*.wav") if p.with_suffix(".txt").exists())


def load_speech(name: str) -> tuple[bytes, str]:
    path = DATA / name
    return load_pcm16(path).tobytes(), path.with_suffix(".txt").read_text(encoding="utf-8").strip()


def silence(seconds: float) -> bytes:
    return np.zeros(int(16000 * seconds), dtype=np.int16).tobytes()
