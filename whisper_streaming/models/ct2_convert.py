"""Convert a CTranslate2 Whisper model directory into an openai-whisper checkpoint (``.pt``).

faster-whisper loads CTranslate2 models; OpenAI's reference implementation (``openai-whisper``,
on PyTorch) loads ``.pt`` checkpoints: ``{"dims": {...}, "model_state_dict": {...}}``.  No
``.pt`` can be downloaded on the machines this project runs on, so the bundled base model is
converted from its CTranslate2 form.

**Reading** ``model.bin`` (the layout written by ``ctranslate2/specs/model_spec.py``
``ModelSpec._serialize``, little-endian, binary versions 4 to 6)::

    uint32 binary_version
    string spec_name                  # uint16 length (incl. NUL), bytes, NUL
    uint32 spec_revision
    uint32 num_variables
      string name; uint8 rank; uint32 dims[rank];
      uint8 dtype_id                  # 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16
      uint32 num_bytes; bytes data
    uint32 num_aliases
      string alias; string variable_name

**Mapping** (``WhisperSpec``, pre-norm Transformer, from ``ctranslate2/converters``
``WhisperLoader``/``set_attention``):

* self-attention ``linear_0`` holds query, key and value fused along the output axis (3 × D);
  cross-attention ``linear_0`` is the query and ``linear_1`` holds key and value fused
  (2 × D); the last linear is the output projection;
* openai-whisper's key projections have no bias.  CTranslate2 stores a zero key bias; even a
  non-zero one adds the same ``q·b`` to every logit of a query, which softmax ignores, so
  dropping it is exact;
* ``layer_norm/gamma``/``beta`` -> ``weight``/``bias``; ``ffn/linear_0``/``linear_1`` ->
  ``mlp.0``/``mlp.2``; ``decoder/projection`` is an alias of (tied to) the token embedding;
* ``num_heads`` is an int16 scalar per stack (older files without it: ``n_state // 64``,
  Whisper's head width).

Weights keep their dtype (float16 stays float16, as in OpenAI's own checkpoints; bfloat16
becomes float32, losslessly).  **int8-quantized** CTranslate2 models (``--quantization
int8``, ``int8_float16`` ...: integer weights plus ``weight_scale``) cannot be converted: the
rounding cannot be undone; :func:`read_ct2_model` raises :class:`ModelError` saying so.

This module needs only numpy to read and map; :func:`save_checkpoint` imports torch.

Command line: ``python -m whisper_streaming.models convert SRC_DIR OUT.pt``.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whisper_streaming.errors import ModelError

__all__ = [
    "Ct2Model",
    "read_ct2_model",
    "ct2_to_openai",
    "state_digest",
    "save_checkpoint",
    "convert",
]

_SUPPORTED_BINARY_VERSIONS = range(4, 7)
_WHISPER_SPEC = "WhisperSpec"
# dtype ids in ctranslate2/specs/model_spec.py ``_dtype_to_type_id``; bfloat16 read as raw uint16.
_DTYPES: tuple[tuple[str, np.dtype], ...] = (
    ("float32", np.dtype("<f4")),
    ("int8", np.dtype("i1")),
    ("int16", np.dtype("<i2")),
    ("int32", np.dtype("<i4")),
    ("float16", np.dtype("<f2")),
    ("bfloat16", np.dtype("<u2")),
)
_HEAD_WIDTH = 64  # every Whisper size uses 64-wide attention heads


@dataclass(frozen=True)
class Ct2Model:
    """The variables of a CTranslate2 ``model.bin`` (numpy arrays, bfloat16 already as float32)."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]
    dtypes: dict[str, str]  # variable name -> CTranslate2 dtype name as stored


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf, self.off, self.path = buf, 0, path

    def _need(self, n: int) -> None:
        if self.off + n > len(self.buf):
            raise ModelError(f"{self.path} is truncated or not a CTranslate2 model.bin (needed {n} bytes at offset {self.off}, file has {len(self.buf)})")

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        self._need(size)
        values = struct.unpack_from(fmt, self.buf, self.off)
        self.off += size
        return values

    def string(self) -> str:
        (n,) = self.unpack("<H")
        self._need(n)
        raw = bytes(self.buf[self.off : self.off + n])
        self.off += n
        if not raw.endswith(b"\0"):
            raise ModelError(f"{self.path}: malformed string at offset {self.off - n} (not a CTranslate2 model.bin?)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelError(f"{self.path}: malformed string at offset {self.off - n}: {exc}") from None

    def array(self, dtype: np.dtype, shape: tuple[int, ...], num_bytes: int) -> np.ndarray:
        self._need(num_bytes)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != num_bytes:
            raise ModelError(f"{self.path}: variable at offset {self.off} has {num_bytes} bytes for shape {shape} of {dtype}")
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.off).copy().reshape(shape)
        self.off += num_bytes
        return arr


def _model_bin(src: str | os.PathLike[str]) -> Path:
    path = Path(src).expanduser()
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise ModelError(f"{path} not found: expected a CTranslate2 model directory containing model.bin")
    return path


def read_ct2_model(src: str | os.PathLike[str]) -> Ct2Model:
    """Read every variable of a CTranslate2 model directory (or its ``model.bin``).

    Raises:
        ModelError: missing or malformed file, unsupported binary version, a spec other than
            ``WhisperSpec``, or an int8/int16-quantized model (which cannot be converted).
    """
    path = _model_bin(src)
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            model = _parse(_Reader(buf, path))
    except (OSError, ValueError) as exc:  # ValueError: mmap of an empty file
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if model.spec != _WHISPER_SPEC:
        raise ModelError(f"{path} is a CTranslate2 {model.spec or 'unnamed'} model, not a Whisper model ({_WHISPER_SPEC})")
    _reject_quantized(model, path)
    return model


def _parse(r: _Reader) -> Ct2Model:
    (version,) = r.unpack("<I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ModelError(
            f"{r.path}: CTranslate2 binary version {version} is not supported "
            f"(supported: {_SUPPORTED_BINARY_VERSIONS.start}-{_SUPPORTED_BINARY_VERSIONS.stop - 1}); "
            "is it a CTranslate2 model.bin?"
        )
    spec = r.string()
    (revision,) = r.unpack("<I")
    (count,) = r.unpack("<I")
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for _ in range(count):
        name = r.string()
        (rank,) = r.unpack("<B")
        shape = r.unpack(f"<{rank}I") if rank else ()
        dtype_id, num_bytes = r.unpack("<BI")
        if dtype_id >= len(_DTYPES):
            raise ModelError(f"{r.path}: variable {name!r} has unknown dtype id {dtype_id}")
        dtype_name, dtype = _DTYPES[dtype_id]
        arr = r.array(dtype, tuple(shape), num_bytes)
        if dtype_name == "bfloat16":  # bfloat16 is the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        variables[name] = arr
        dtypes[name] = dtype_name
    (n_aliases,) = r.unpack("<I")
    aliases = {}
    for _ in range(n_aliases):
        alias = r.string()
        aliases[alias] = r.string()
    if r.off != len(r.buf):
        raise ModelError(f"{r.path}: {len(r.buf) - r.off} unexpected trailing bytes after the model variables")
    return Ct2Model(spec, revision, version, variables, aliases, dtypes)


def _reject_quantized(model: Ct2Model, path: Path) -> None:
    scaled = sorted(n for n in model.variables if n.endswith("weight_scale"))
    integer = sorted(n for n, a in model.variables.items() if a.ndim >= 2 and model.dtypes[n].startswith("int"))
    if scaled or integer:
        example = (integer or scaled)[0]
        kind = model.dtypes.get(example, "int8") if integer else "int8"
        raise ModelError(
            f"{path} is a {kind}-quantized CTranslate2 model ({example!r} is {model.dtypes[example]}"
            f"{', with weight_scale' if scaled else ''}): it cannot be converted to an openai-whisper "
            "checkpoint, whose weights must be floating point, and the quantization cannot be undone. "
            "Convert the original model again without --quantization (or with --quantization float16 / "
            "float32) and convert that directory."
        )


def _layer_count(names: Mapping[str, object], prefix: str) -> int:
    indices = {int(m.group(1)) for n in names if (m := re.match(rf"{prefix}/layer_(\d+)/", n))}
    if not indices or indices != set(range(len(indices))):
        raise ModelError(f"{prefix} layers are missing or not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def ct2_to_openai(model: Ct2Model) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Map a CTranslate2 Whisper model to openai-whisper ``ModelDimensions`` fields and state dict.

    Raises:
        ModelError: a variable is missing or has an unexpected shape, or the file holds tensors
            this mapping does not know (a layout openai-whisper cannot represent).
    """
    v = model.variables
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in v:
            raise ModelError(f"not a Whisper model this converter knows: variable {name!r} is missing")
        used.add(name)
        return v[name]

    def split(name: str, parts: int) -> list[np.ndarray]:
        arr = take(name)
        if arr.shape[0] % parts:
            raise ModelError(f"{name!r} has shape {arr.shape}; expected the first axis to hold {parts} fused projections")
        return [np.ascontiguousarray(p) for p in np.split(arr, parts, axis=0)]

    state: dict[str, np.ndarray] = {}

    def norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = take(f"{src}/gamma")
        state[f"{dst}.bias"] = take(f"{src}/beta")

    def linear(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = take(f"{src}/weight")
        state[f"{dst}.bias"] = take(f"{src}/bias")

    def fused(dst: str, names: tuple[str, ...], src: str) -> None:
        weights, biases = split(f"{src}/weight", len(names)), split(f"{src}/bias", len(names))
        for name, w, b in zip(names, weights, biases):
            state[f"{dst}.{name}.weight"] = w
            if name != "key":  # openai-whisper's key projection has no bias (softmax-invariant)
                state[f"{dst}.{name}.bias"] = b

    def mlp(dst: str, src: str) -> None:
        norm(f"{dst}.mlp_ln", f"{src}/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/linear_1")

    n_audio_layer = _layer_count(v, "encoder")
    n_text_layer = _layer_count(v, "decoder")

    state["encoder.positional_embedding"] = take("encoder/position_encodings/encodings")
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    for i in range(n_audio_layer):
        dst, src = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.attn", ("query", "key", "value"), f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        mlp(dst, f"{src}/ffn")
    norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.positional_embedding"] = take("decoder/position_encodings/encodings")
    state["decoder.token_embedding.weight"] = take("decoder/embeddings/weight")
    for i in range(n_text_layer):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        fused(f"{dst}.attn", ("query", "key", "value"), f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        fused(f"{dst}.cross_attn", ("key", "value"), f"{src}/attention/linear_1")
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        mlp(dst, f"{src}/ffn")
    norm("decoder.ln", "decoder/layer_norm")

    # openai-whisper ties the output projection to the token embedding.
    projection = "decoder/projection/weight"
    if projection in v:
        if not np.array_equal(v[projection], state["decoder.token_embedding.weight"]):
            raise ModelError("the output projection differs from the token embedding; openai-whisper ties them")
        used.add(projection)
    elif model.aliases.get(projection, "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise ModelError(f"{projection} is an alias of {model.aliases[projection]!r}, not of the token embedding")
    unknown = sorted(n for n in v if n not in used and v[n].ndim > 0)
    if unknown:
        raise ModelError(f"unexpected tensors for a Whisper model (layout not supported): {', '.join(unknown[:5])}")

    conv1 = state["encoder.conv1.weight"]
    audio_ctx, audio_state = state["encoder.positional_embedding"].shape
    text_ctx, text_state = state["decoder.positional_embedding"].shape
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_vocab": int(state["decoder.token_embedding.weight"].shape[0]),
        "n_audio_ctx": int(audio_ctx),
        "n_audio_state": int(audio_state),
        "n_audio_head": _heads(v, "encoder", audio_state),
        "n_audio_layer": n_audio_layer,
        "n_text_ctx": int(text_ctx),
        "n_text_state": int(text_state),
        "n_text_head": _heads(v, "decoder", text_state),
        "n_text_layer": n_text_layer,
    }
    return dims, state


def _heads(v: Mapping[str, np.ndarray], stack: str, n_state: int) -> int:
    stored = v.get(f"{stack}/num_heads")
    heads = int(stored) if stored is not None else n_state // _HEAD_WIDTH
    if heads <= 0 or n_state % heads:
        raise ModelError(f"{stack}: {heads} attention heads do not divide the width {n_state}")
    return heads


def state_digest(dims: Mapping[str, int], state: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over dims and every tensor's name, dtype, shape and bytes (independent of torch's file format)."""
    h = hashlib.sha256()
    h.update(repr(sorted(dims.items())).encode())
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def save_checkpoint(dims: Mapping[str, int], state: Mapping[str, np.ndarray], out: str | os.PathLike[str]) -> str:
    """Write ``{"dims": dims, "model_state_dict": state}`` with ``torch.save``, atomically.

    The file appears at ``out`` only once complete (temporary file in the same directory,
    fsync, rename).  Returns the SHA-256 of the written file.
    """
    import torch

    from whisper_streaming.models.files import atomic_writer

    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"dims": dict(dims), "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in state.items()}}
    with atomic_writer(out) as fh:
        hashing = _HashingWriter(fh)
        torch.save(checkpoint, hashing)
    return hashing.digest.hexdigest()


class _HashingWriter:
    """A write-only file object that hashes what passes through (torch.save only writes)."""

    def __init__(self, fh) -> None:  # type: ignore[no-untyped-def]
        self.fh, self.digest = fh, hashlib.sha256()

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        self.digest.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def convert(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[dict[str, int], str]:
    """Convert a CTranslate2 Whisper directory to an openai-whisper ``.pt``; returns (dims, content digest).

    Raises:
        ModelError: see :func:`read_ct2_model` and :func:`ct2_to_openai`; or ``out`` cannot be written.
    """
    dims, state = ct2_to_openai(read_ct2_model(src))
    try:
        save_checkpoint(dims, state, out)
    except OSError as exc:
        raise ModelError(f"cannot write {out}: {exc}") from exc
    return dims, state_digest(dims, state)
