"""Shared pieces of the benchmarks: speech files with references, WER/CER, machine info."""

from __future__ import annotations

import os
import platform
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from whisper_streaming.client.audio_files import load_pcm16

__all__ = ["SpeechFile", "load_dir", "error_rate", "machine_info", "percentile", "DEFAULT_AUDIO_DIR", "display_units", "erased_units"]

DEFAULT_AUDIO_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speech" / "en"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".pcm")


@dataclass(frozen=True)
class SpeechFile:
    name: str
    pcm: bytes  # s16le mono at sample_rate_hz
    reference: str | None
    sample_rate_hz: int = 16000

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate_hz


def load_dir(directory: Path, *, limit: int | None = None, sample_rate_hz: int = 16000) -> list[SpeechFile]:
    """Every audio file in ``directory`` (sorted) with its ``.txt`` reference if present,
    as s16le at ``sample_rate_hz``."""
    files = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        ref = path.with_suffix(".txt")
        files.append(SpeechFile(path.name, load_pcm16(path, sample_rate_hz=sample_rate_hz).tobytes(), ref.read_text(encoding="utf-8").strip() if ref.exists() else None, sample_rate_hz))
        if limit and len(files) >= limit:
            break
    return files


_english = None


def _normalize_english(text: str) -> str:
    global _english
    if _english is None:
        from whisper_normalizer.english import EnglishTextNormalizer

        _english = EnglishTextNormalizer()
    return _english(text)


def _normalize_cjk(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[\W_]+", "", text)


def error_rate(reference: str, hypothesis: str, language: str) -> tuple[str, float]:
    """``("wer", x)`` with Whisper's English normalizer, or ``("cer", x)`` for ko/ja/zh."""
    if language in ("ko", "ja", "zh"):
        ref = _normalize_cjk(reference)
        return "cer", jiwer.cer(ref, _normalize_cjk(hypothesis) or "-")
    return "wer", jiwer.wer(_normalize_english(reference), _normalize_english(hypothesis) or "<empty>")


def corpus_error_rate(pairs: list[tuple[str, str]], language: str) -> tuple[str, float]:
    """Error rate over a whole corpus (errors summed over reference words), not a mean of files."""
    if language in ("ko", "ja", "zh"):
        return "cer", jiwer.cer([_normalize_cjk(r) for r, _ in pairs], [_normalize_cjk(h) or "-" for _, h in pairs])
    return "wer", jiwer.wer([_normalize_english(r) for r, _ in pairs], [_normalize_english(h) or "<empty>" for _, h in pairs])


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def machine_info() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def display_units(text: str) -> list[str]:
    """``text`` as normalized display units, as the server's stable prefix compares them
    (``whisper_streaming.pipeline.partials.split_units``: words, or characters for scripts
    written without spaces), case folded, punctuation removed, empty units dropped."""
    from whisper_streaming.pipeline.partials import split_units

    units = (re.sub(r"[^\w]+", "", u.casefold()) for u in split_units(text)[0])
    return [u for u in units if u]


def erased_units(before: list[str], after: list[str]) -> int:
    """Units deleted from the end of ``before`` to turn it into ``after`` (its length beyond
    their longest common prefix): the per-update erasure of Arivazhagan et al. 2020."""
    common = 0
    for a, b in zip(before, after):
        if a != b:
            break
        common += 1
    return len(before) - common
