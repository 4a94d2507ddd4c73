"""CTranslate2 -> openai-whisper converter.

* the real bundled base model: dims, every state_dict key and shape, strict loading, the encoder
  output against CTranslate2's own encoder on the same features, and the JFK recording decoded
  word for word;
* tiny random models written by CTranslate2's own spec code (``WhisperSpec.save``) in float32,
  float16 and bfloat16 (exact round trip) and int8/int16 (refused with a clear error);
* malformed files, the ``convert`` CLI verb, and the cached, checksummed conversion.
"""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ctranslate2
import numpy as np
import pytest
import torch
import whisper
from ctranslate2.specs import whisper_spec
from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim
from whisper.model import ModelDimensions, Whisper

from speech import DATA, normalized_wer
from whisper_streaming.models import ct2_convert
from whisper_streaming.models import resolve as models
from whisper_streaming.engines.base import pcm16_to_float32
from whisper_streaming.client.audio_files import load_pcm16
from whisper_streaming.models.ct2_convert import ct2_to_openai, read_ct2_model, state_digest
from whisper_streaming.errors import ModelError

BASE_DIMS = {
    "n_mels": 80, "n_vocab": 51865, "n_audio_ctx": 1500, "n_audio_state": 512, "n_audio_head": 8,
    "n_audio_layer": 6, "n_text_ctx": 448, "n_text_state": 512, "n_text_head": 8, "n_text_layer": 6,
}


# --------------------------------------------------------------------------- the bundled base model


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def converted_base(cache_dir: Path) -> Path:
    return models.converted_bundled_base(cache_dir)


@pytest.fixture(scope="module")
def base_checkpoint(converted_base: Path) -> dict:
    return torch.load(converted_base, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def base_model(base_checkpoint: dict) -> Whisper:
    model = Whisper(ModelDimensions(**base_checkpoint["dims"]))
    model.load_state_dict(base_checkpoint["model_state_dict"], strict=True)
    return model.eval()


def _jfk_audio() -> np.ndarray:
    return pcm16_to_float32(load_pcm16(DATA / "jfk.wav"))


def test_base_dims_and_state_dict(base_checkpoint: dict) -> None:
    assert base_checkpoint["dims"] == BASE_DIMS
    expected = Whisper(ModelDimensions(**BASE_DIMS)).state_dict()
    state = base_checkpoint["model_state_dict"]
    assert set(state) == set(expected)
    for name, tensor in expected.items():
        assert state[name].shape == tensor.shape, name
        assert state[name].dtype == torch.float16, name  # the bundled model is float16, kept as such
    Whisper(ModelDimensions(**BASE_DIMS)).load_state_dict(state, strict=True)
    assert not torch.equal(state["encoder.blocks.0.attn.query.weight"], state["encoder.blocks.0.attn.key.weight"])


def test_base_encoder_matches_ctranslate2(base_model: Whisper, cache_dir: Path) -> None:
    """Same mel features through CTranslate2's encoder and the converted PyTorch encoder."""
    mel = pad_or_trim(log_mel_spectrogram(_jfk_audio(), 80, padding=N_SAMPLES), N_FRAMES)[None]
    with torch.inference_mode():
        ours = base_model.encoder(mel).numpy()
    ct2 = ctranslate2.models.Whisper(str(models.assemble_bundled_base(cache_dir)), device="cpu", compute_type="float32")
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))))
    assert ours.shape == theirs.shape == (1, 1500, 512)
    cosine = float((ours * theirs).sum() / np.linalg.norm(ours) / np.linalg.norm(theirs))
    assert cosine > 0.9999, cosine
    assert np.abs(ours - theirs).max() < 5e-4 * np.abs(theirs).max()  # measured: 1e-3 of 24


def test_base_transcribes_jfk_word_for_word(converted_base: Path) -> None:
    model = whisper.load_model(str(converted_base), device="cpu")
    result = whisper.transcribe(model, _jfk_audio(), language="en", temperature=0.0, beam_size=None, fp16=False, verbose=None)
    reference = (DATA / "jfk.txt").read_text(encoding="utf-8")
    assert normalized_wer(reference, result["text"]) == 0.0, result["text"]


# --------------------------------------------------------------------------- tiny models written by CTranslate2


TINY = ModelDimensions(n_mels=80, n_vocab=40, n_audio_ctx=8, n_audio_state=64, n_audio_head=4, n_audio_layer=2,
                       n_text_ctx=6, n_text_state=64, n_text_head=4, n_text_layer=2)


def _tiny_state(seed: int = 0) -> dict[str, np.ndarray]:
    """A random openai-whisper state dict (every tensor random, layer norms included)."""
    torch.manual_seed(seed)
    return {k: torch.randn(v.shape).numpy() for k, v in Whisper(TINY).state_dict().items()}


def _fill_attention(spec, sd: dict[str, np.ndarray], prefix: str, fused: tuple[str, ...], linears: list) -> None:  # type: ignore[no-untyped-def]
    """Fuse like ctranslate2's ``set_attention``: zero bias for openai-whisper's bias-less key."""
    linears[0].weight = np.concatenate([sd[f"{prefix}.{n}.weight"] for n in fused])
    linears[0].bias = np.concatenate([sd.get(f"{prefix}.{n}.bias", np.zeros(TINY.n_audio_state, np.float32)) for n in fused])


def _write_ct2(sd: dict[str, np.ndarray], out: Path, quantization: str | None) -> Path:
    """Write ``sd`` as a CTranslate2 Whisper model with CTranslate2's own spec classes."""
    spec = whisper_spec.WhisperSpec(TINY.n_audio_layer, TINY.n_audio_head, TINY.n_text_layer, TINY.n_text_head)

    def norm(target, name: str) -> None:  # type: ignore[no-untyped-def]
        target.gamma, target.beta = sd[f"{name}.weight"], sd[f"{name}.bias"]

    def linear(target, name: str) -> None:  # type: ignore[no-untyped-def]
        target.weight, target.bias = sd[f"{name}.weight"], sd[f"{name}.bias"]

    enc = spec.encoder
    linear(enc.conv1, "encoder.conv1")
    linear(enc.conv2, "encoder.conv2")
    enc.position_encodings.encodings = sd["encoder.positional_embedding"]
    norm(enc.layer_norm, "encoder.ln_post")
    def block(layer, p: str) -> None:  # type: ignore[no-untyped-def]  # self-attention and MLP, both stacks
        norm(layer.self_attention.layer_norm, f"{p}.attn_ln")
        _fill_attention(spec, sd, f"{p}.attn", ("query", "key", "value"), layer.self_attention.linear)
        linear(layer.self_attention.linear[1], f"{p}.attn.out")
        norm(layer.ffn.layer_norm, f"{p}.mlp_ln")
        linear(layer.ffn.linear_0, f"{p}.mlp.0")
        linear(layer.ffn.linear_1, f"{p}.mlp.2")

    for i, layer in enumerate(enc.layer):
        block(layer, f"encoder.blocks.{i}")
    dec = spec.decoder
    dec.embeddings.weight = sd["decoder.token_embedding.weight"]
    dec.projection.weight = sd["decoder.token_embedding.weight"]  # tied: saved as an alias
    dec.position_encodings.encodings = sd["decoder.positional_embedding"]
    norm(dec.layer_norm, "decoder.ln")
    for i, layer in enumerate(dec.layer):
        p = f"decoder.blocks.{i}"
        block(layer, p)
        norm(layer.attention.layer_norm, f"{p}.cross_attn_ln")
        linear(layer.attention.linear[0], f"{p}.cross_attn.query")
        _fill_attention(spec, sd, f"{p}.cross_attn", ("key", "value"), layer.attention.linear[1:])
        linear(layer.attention.linear[2], f"{p}.cross_attn.out")
    spec.register_vocabulary([f"t{i}" for i in range(TINY.n_vocab)])
    spec.validate()
    spec.optimize(quantization=quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, np.ndarray]:
    return _tiny_state()


@pytest.mark.parametrize(
    ("quantization", "expected"),
    [
        ("float32", lambda a: a),
        ("float16", lambda a: a.astype(np.float16)),
        ("bfloat16", lambda a: torch.from_numpy(a).to(torch.bfloat16).float().numpy()),
    ],
)
def test_tiny_round_trip_is_exact(tiny_state, tmp_path: Path, quantization: str, expected) -> None:  # type: ignore[no-untyped-def]
    src = _write_ct2(tiny_state, tmp_path / quantization, quantization)
    dims, state = ct2_to_openai(read_ct2_model(src))
    assert dims == TINY.__dict__
    assert set(state) == set(tiny_state)
    for name, array in tiny_state.items():
        np.testing.assert_array_equal(state[name], expected(array), err_msg=name)
    Whisper(ModelDimensions(**dims)).load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)


def test_tiny_encoder_matches_ctranslate2(tiny_state, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Random weights (so a swapped query/key/value would show) through both runtimes."""
    src = _write_ct2(tiny_state, tmp_path / "m", None)
    out = tmp_path / "tiny.pt"
    assert models.main(["convert", str(src), str(out)]) == 0
    model = whisper.load_model(str(out), device="cpu").eval()
    mel = torch.randn(1, TINY.n_mels, 2 * TINY.n_audio_ctx)
    with torch.inference_mode():
        ours = model.encoder(mel).numpy()
    theirs = np.array(ctranslate2.models.Whisper(str(src), device="cpu").encode(ctranslate2.StorageView.from_array(mel.numpy())))
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("quantization", ["int8", "int8_float16", "int16"])
def test_quantized_model_is_refused_clearly(tiny_state, tmp_path: Path, quantization: str, capsys) -> None:  # type: ignore[no-untyped-def]
    src = _write_ct2(tiny_state, tmp_path / quantization, quantization)
    with pytest.raises(ModelError, match=r"quantized CTranslate2 model .* cannot be converted") as info:
        read_ct2_model(src)
    assert quantization.split("_")[0] in str(info.value)
    out = tmp_path / "out.pt"
    assert models.main(["convert", str(src), str(out)]) == 1
    assert "cannot be converted" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.pt.*"))


def _header(spec: str = "WhisperSpec", version: int = 6) -> bytes:
    name = spec.encode() + b"\0"
    return struct.pack("<IH", version, len(name)) + name + struct.pack("<I", 3)


def _variable(name: str, array: np.ndarray, dtype_id: int) -> bytes:
    raw = name.encode() + b"\0"
    return (struct.pack("<H", len(raw)) + raw + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
            + struct.pack("<BI", dtype_id, array.nbytes) + array.tobytes())


def test_hand_written_int8_weight_is_refused(tmp_path: Path) -> None:
    body = _variable("encoder/layer_0/ffn/linear_0/weight", np.ones((4, 4), np.int8), 1)
    body += _variable("encoder/layer_0/ffn/linear_0/weight_scale", np.ones(4, np.float32), 0)
    (tmp_path / "model.bin").write_bytes(_header() + struct.pack("<I", 2) + body + struct.pack("<I", 0))
    with pytest.raises(ModelError, match="int8-quantized"):
        read_ct2_model(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "cannot read"),
        (_header(version=99), "binary version 99 is not supported"),
        (_header("TransformerSpec") + struct.pack("<II", 0, 0), "not a Whisper model"),
        (_header() + struct.pack("<I", 1) + _variable("x", np.ones(4, np.float32), 0)[:-3], "truncated"),
        (_header() + struct.pack("<II", 0, 0) + b"junk", "trailing bytes"),
        (_header() + struct.pack("<I", 1) + _variable("x", np.ones(4, np.float32), 9) + struct.pack("<I", 0), "unknown dtype id 9"),
        (_header() + struct.pack("<II", 0, 0), "layers are missing"),
    ],
    ids=["missing", "empty", "version", "spec", "truncated", "trailing", "dtype", "no-layers"],
)
def test_malformed_files_raise_model_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(ModelError, match=message):
        ct2_to_openai(read_ct2_model(tmp_path))


def test_missing_tensor_is_named(tiny_state, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = read_ct2_model(_write_ct2(tiny_state, tmp_path / "m", None))
    del model.variables["decoder/layer_1/attention/linear_1/weight"]
    with pytest.raises(ModelError, match="decoder/layer_1/attention/linear_1/weight"):
        ct2_to_openai(model)


# --------------------------------------------------------------------------- the cached conversion


def test_cached_conversion_is_reused_and_vouched(converted_base: Path, cache_dir: Path) -> None:
    assert converted_base.name == "base.pt" and converted_base.parent.parent == cache_dir / "models"
    before = converted_base.stat()
    assert models.converted_bundled_base(cache_dir) == converted_base  # fast path: no rewrite
    after = converted_base.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    digest, file_sha256, size = (converted_base.parent / "base.pt.sha256").read_text().split()
    assert digest == models.BUNDLED_BASE_OPENAI_SHA256 and int(size) == before.st_size and len(file_sha256) == 64
    assert not [p for p in converted_base.parent.iterdir() if p.name.endswith(".tmp")]
    assert models.resolve_model("base", cache_dir=cache_dir, engine="openai-whisper") == str(converted_base)


def test_conversion_digest_mismatch_writes_nothing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The content digest is checked before anything is written."""
    monkeypatch.setattr(models, "BUNDLED_BASE_OPENAI_SHA256", "0" * 64)
    monkeypatch.setattr(models, "_CONVERTER_VERSION", 999)  # a fresh target directory
    with pytest.raises(ModelError, match="checksum mismatch .* expected content sha256 0{64}, got "):
        models.converted_bundled_base(cache_dir)
    target = next((cache_dir / "models").glob("whisper-base-openai-*-v999"))
    assert list(target.iterdir()) == []


@pytest.fixture
def tiny_as_bundled(tiny_state, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Make converted_bundled_base convert a tiny model (slowly) into a fresh target; count reads."""
    model = read_ct2_model(_write_ct2(tiny_state, tmp_path / "m", None))
    reads: list[int] = []

    def slow_read(src):  # type: ignore[no-untyped-def]
        reads.append(1)
        time.sleep(0.3)
        return model

    monkeypatch.setattr(ct2_convert, "read_ct2_model", slow_read)
    monkeypatch.setattr(models, "BUNDLED_BASE_OPENAI_SHA256", state_digest(*ct2_to_openai(model)))
    monkeypatch.setattr(models, "_CONVERTER_VERSION", int(time.time_ns() % 10**9))
    return reads


def test_concurrent_callers_convert_once(cache_dir: Path, tiny_as_bundled: list[int]) -> None:
    with ThreadPoolExecutor(4) as pool:  # flock on separate open()s excludes threads too
        paths = list(pool.map(lambda _: models.converted_bundled_base(cache_dir), range(4)))
    assert len(set(paths)) == 1 and len(tiny_as_bundled) == 1
    assert torch.load(paths[0], weights_only=True)["dims"] == TINY.__dict__


def test_failed_write_leaves_nothing(cache_dir: Path, tiny_as_bundled: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def torn_save(obj, fh):  # type: ignore[no-untyped-def]
        fh.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(ModelError, match="No space left"):
        models.converted_bundled_base(cache_dir)
    target = next(p for p in (cache_dir / "models").iterdir() if p.name.endswith(f"-v{models._CONVERTER_VERSION}"))
    assert list(target.iterdir()) == []


def test_state_digest_depends_on_every_byte(tiny_state) -> None:  # type: ignore[no-untyped-def]
    dims = dict(TINY.__dict__)
    changed = dict(tiny_state)
    changed["decoder.ln.bias"] = tiny_state["decoder.ln.bias"].copy()
    changed["decoder.ln.bias"][0] += 1
    assert state_digest(dims, tiny_state) == state_digest(dims, dict(tiny_state))
    assert state_digest(dims, tiny_state) != state_digest(dims, changed)
    assert state_digest(dims, tiny_state) != state_digest({**dims, "n_text_head": 2}, tiny_state)
