"""The openai-whisper engine: model resolution, the engine in process, and end to end.

End to end, a second server process runs ``model.engine: openai-whisper`` on the bundled base
model (converted for it) and must transcribe the shipped speech files with a normalized WER
within 5 points of the faster-whisper server (the shared ``server`` fixture) on the same files.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from speech import DATA, E2E_CONFIG, load_speech, normalized_wer, silence
from whisper_streaming.models import resolve as models
from whisper_streaming.app.wiring import engine_options_from_config
from whisper_streaming.engines.registry import ENGINES, create_engine
from whisper_streaming.engines.base import DecodeOptions, EngineOptions, pcm16_to_float32
from whisper_streaming.core.transcript import Transcript
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.client.cli import stream_file
from whisper_streaming.config.schema import parse_config
from whisper_streaming.errors import AsrError, ConfigError, ModelError, TranscriptionStopped, UsageError
from whisper_streaming.engines.openai_whisper import BEST_OF, OpenAIWhisperEngine
from bench.server_process import REPO_ROOT, ServerProcess

JFK = "jfk.wav"
E2E_FILES = ("jfk.wav", "librispeech_dev-clean_1272-128104-0000.wav", "librispeech_test-clean_1995-1837-0001.wav")


def _audio(name: str) -> np.ndarray:
    return pcm16_to_float32(load_speech(name)[0])


def _reference(name: str) -> str:
    return (DATA / name).with_suffix(".txt").read_text(encoding="utf-8").strip()


# --------------------------------------------------------------------------- config and resolution


def test_importing_the_package_needs_no_torch() -> None:
    code = ("import sys, whisper_streaming.engines.faster_whisper, whisper_streaming.app.main, whisper_streaming.models.resolve, whisper_streaming.models.ct2_convert;"
            "assert not {'torch', 'whisper'} & set(sys.modules), sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_config_accepts_both_engines_only() -> None:
    assert parse_config({"model": {"engine": "openai-whisper"}}).model.engine == "openai-whisper"
    assert parse_config({}).model.engine == "faster-whisper"
    with pytest.raises(ConfigError, match="model.engine"):
        parse_config({"model": {"engine": "whisper.cpp"}})
    assert set(ENGINES) == {"faster-whisper", "openai-whisper"}


def test_engine_options_resolve_per_engine() -> None:
    openai = engine_options_from_config(parse_config({"model": {"engine": "openai-whisper", "size": "base"}}))
    assert openai.engine == "openai-whisper" and openai.model == str(models.converted_bundled_base())
    faster = engine_options_from_config(parse_config({"model": {"size": "base"}}))
    assert faster.model == str(models.assemble_bundled_base())
    assert engine_options_from_config(parse_config({"model": {"engine": "openai-whisper", "size": "large-v3"}})).model == "large-v3"


def test_resolve_for_openai_whisper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"x")
    resolve = lambda v: models.resolve_model(v, engine="openai-whisper")  # noqa: E731
    assert resolve(str(checkpoint)) == str(checkpoint.resolve())
    monkeypatch.chdir(tmp_path)
    assert resolve("./mine.pt") == str(checkpoint.resolve())
    for name in ("tiny", "small.en", "large-v3", "turbo"):
        assert resolve(name) == name
    ct2_dir = tmp_path / "ct2"
    ct2_dir.mkdir()
    (ct2_dir / "model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="CTranslate2 model directory.*whisper_streaming.models convert"):
        resolve(str(ct2_dir))
    with pytest.raises(ModelError, match="does not exist|not a file"):
        resolve("./missing.pt")
    with pytest.raises(ModelError, match="unknown model 'huge' for openai-whisper"):
        resolve("huge")
    with pytest.raises(ModelError, match="unknown engine"):
        models.resolve_model("base", engine="nope")
    assert models.main(["resolve", "tiny", "--engine", "openai-whisper"]) == 0


# --------------------------------------------------------------------------- the engine in process


@pytest.fixture(scope="module")
def engine() -> OpenAIWhisperEngine:
    options = EngineOptions(engine="openai-whisper", model=str(models.converted_bundled_base()), decode=DecodeOptions(language=None))
    built = create_engine(options)
    assert isinstance(built, OpenAIWhisperEngine) and built.name == "openai-whisper"
    return built


def test_detects_language_and_transcribes(engine: OpenAIWhisperEngine) -> None:
    audio = _audio(JFK)
    transcript = engine.transcribe(audio)
    assert isinstance(transcript, Transcript)
    assert transcript.language == "en" and 0.5 < transcript.language_probability <= 1.0
    assert normalized_wer(_reference(JFK), transcript.text) <= 0.05, transcript.text
    assert transcript.audio_duration_s == pytest.approx(len(audio) / 16000)
    assert transcript.segments and all(0 <= s.start_s < s.end_s <= 11.5 for s in transcript.segments)
    assert all(isinstance(v, float) for s in transcript.segments for v in (s.avg_logprob, s.no_speech_prob, s.compression_ratio))


def test_no_speech_guard_decides_on_silence(engine: OpenAIWhisperEngine) -> None:
    """On 2 s of zeros both engines say "You" (no_speech_prob 0.75, avg_logprob -0.88 > -1: kept,
    as Whisper's rule says); with a stricter log_prob_threshold the guard drops it."""
    zeros = np.zeros(16000 * 2, dtype=np.float32)
    default = engine.transcribe(zeros)
    assert all(s.no_speech_prob > 0.6 for s in default.segments)
    strict = copy.copy(engine)
    strict.options = dataclasses.replace(engine.options, decode=dataclasses.replace(engine.options.decode, language="en", log_prob_threshold=-0.5))
    assert strict.transcribe(zeros).text == ""


def test_decode_options_reach_openai_whisper(engine: OpenAIWhisperEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DecodeOptions field maps onto whisper.transcribe's arguments (no model run)."""
    calls: list[dict] = []

    def fake_transcribe(model, audio, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return {"language": kwargs["language"], "segments": [
            {"start": 0.0, "end": 1.0, "text": " Hello.", "avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.1},
            {"start": 1.0, "end": 2.0, "text": "  ", "avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.1},
        ]}

    monkeypatch.setattr(engine._whisper, "transcribe", fake_transcribe)
    decode = DecodeOptions(language="ko", beam_size=3, temperatures=(0.0, 0.5), no_speech_threshold=0.7, log_prob_threshold=-2.0,
                           compression_ratio_threshold=3.0, condition_on_previous_text=True, initial_prompt="prompt")
    configured = copy.copy(engine)
    configured.options = dataclasses.replace(engine.options, decode=decode)
    transcript = configured.transcribe(np.zeros(16000, dtype=np.float32))
    assert transcript.text == "Hello." and transcript.language == "ko" and transcript.language_probability == 1.0
    assert len(transcript.segments) == 2
    assert calls[-1] == {
        "verbose": None, "language": "ko", "task": "transcribe", "temperature": (0.0, 0.5), "beam_size": 3, "best_of": BEST_OF,
        "compression_ratio_threshold": 3.0, "logprob_threshold": -2.0, "no_speech_threshold": 0.7,
        "condition_on_previous_text": True, "initial_prompt": "prompt", "word_timestamps": False, "fp16": False,
    }
    configured.options = dataclasses.replace(engine.options, decode=dataclasses.replace(decode, beam_size=1, no_speech_threshold=None))
    configured.transcribe(np.zeros(16000, dtype=np.float32))
    assert calls[-1]["beam_size"] is None and calls[-1]["no_speech_threshold"] is None  # greedy, guard off


def test_a_withdrawn_call_stops_before_the_decode(engine: OpenAIWhisperEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[int] = []
    monkeypatch.setattr(engine._whisper, "transcribe", lambda *a, **k: decoded.append(1))
    with pytest.raises(TranscriptionStopped):
        engine.transcribe(np.zeros(16000, dtype=np.float32), should_stop=lambda: True)
    assert decoded == []


def test_bad_input_and_bad_models(engine: OpenAIWhisperEngine, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        engine.transcribe(np.zeros(100, dtype=np.int16))
    with pytest.raises(UsageError):
        engine.transcribe(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(AsrError, match="not a checkpoint file nor one of"):
        create_engine(EngineOptions(engine="openai-whisper", model="huge"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(AsrError, match="cannot load openai-whisper model"):
        create_engine(EngineOptions(engine="openai-whisper", model=str(garbage)))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = tmp_path_factory.mktemp("openai") / "openai.yaml"
    config.write_text(E2E_CONFIG.replace("model:\n", "model:\n  engine: openai-whisper\n", 1), encoding="utf-8")
    with ServerProcess(config=config, start_timeout_s=180) as proc:
        yield proc


def _stream_all(port: int) -> list[str]:
    async def one(name: str) -> str:
        pcm, _ = load_speech(name)
        client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id="engines")
        try:
            results = await stream_file(client, pcm + silence(0.6), speed=0)
        finally:
            await client.close()
        ends = [r.end_s for r in results]
        assert ends == sorted(ends) and all(0 <= r.start_s < r.end_s <= len(pcm) / 32000 + 0.7 for r in results)
        return " ".join(r.text for r in results)

    async def run() -> list[str]:
        return [await one(name) for name in E2E_FILES]

    return asyncio.run(run())


@pytest.mark.e2e
def test_openai_whisper_server_matches_faster_whisper_wer(openai_server: ServerProcess, server: ServerProcess) -> None:
    assert "openai-whisper" in openai_server.log_text()
    references = " ".join(_reference(name) for name in E2E_FILES)
    t0 = time.monotonic()
    openai_wer = normalized_wer(references, " ".join(_stream_all(openai_server.port)))
    t1 = time.monotonic()
    faster_wer = normalized_wer(references, " ".join(_stream_all(server.port)))
    t2 = time.monotonic()
    print(f"normalized WER on {len(E2E_FILES)} files: openai-whisper {openai_wer:.3f} ({t1 - t0:.1f} s), "
          f"faster-whisper {faster_wer:.3f} ({t2 - t1:.1f} s)")
    assert openai_wer <= faster_wer + 0.05
    assert openai_wer <= 0.15
