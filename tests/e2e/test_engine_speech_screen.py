"""The speech screen in front of the real engine (default config) and in the real server:
hold music and touch tones are not decoded; speech, quiet speech and speech over music are,
with the text the engine alone gives."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.server_process import ServerProcess
from whisper_streaming.app.wiring import engine_options_from_config
from whisper_streaming.client.cli import stream_file
from whisper_streaming.client.streaming import AsyncStreamingClient, Result
from whisper_streaming.config.loader import load_config
from whisper_streaming.core.language import LanguageRequest
from whisper_streaming.engines.registry import create_engine
from whisper_streaming.engines.speech_screen import ScreenedEngine

from bench.signals import dtmf, hold_music
from speech import JFK, assert_transcript, load_speech, silence

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parent.parent / "data"
RATE = 16000


@pytest.fixture(scope="module")
def engine() -> ScreenedEngine:
    built = create_engine(engine_options_from_config(load_config(None)))
    assert isinstance(built, ScreenedEngine)  # on by default
    return built


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    audio, rate = sf.read(DATA / "jfk.wav", dtype="float32")
    assert rate == RATE
    return np.ascontiguousarray(audio)


def test_hold_music_and_touch_tones_are_not_decoded(engine: ScreenedEngine) -> None:
    before = engine.screened
    for audio in (hold_music(6.0).astype(np.float32), dtmf("5551234987").astype(np.float32)):
        t = engine.transcribe(audio, language=LanguageRequest(kept="en", confirmed=True))
        assert t.text == "" and t.no_speech_screened and t.attempts == 0, t
    assert engine.screened == before + 2


@pytest.mark.parametrize("level", ["original", "-65 dBFS", "over hold music"])
def test_speech_is_decoded_as_the_engine_alone_decodes_it(engine: ScreenedEngine, jfk: np.ndarray, level: str) -> None:
    audio = jfk
    if level == "-65 dBFS":
        audio = (jfk * 10 ** (-65 / 20) / np.sqrt(np.mean(jfk.astype(np.float64) ** 2))).astype(np.float32)
    elif level == "over hold music":
        audio = (jfk + 0.3 * hold_music(len(jfk) / RATE + 1)[: len(jfk)]).astype(np.float32)
    request = LanguageRequest(fixed="en")
    before = engine.screened
    screened = engine.transcribe(audio, language=request)
    alone = engine.inner.transcribe(audio, language=request)
    assert engine.screened == before and not screened.no_speech_screened
    assert screened.text == alone.text
    if level != "over hold music":
        assert_transcript(JFK, screened.text)


def test_the_server_skips_hold_music_and_keeps_the_speech(server: ServerProcess) -> None:
    """A caller on hold: 8 s of music (one utterance the VAD cuts), then the caller speaks."""
    music = np.clip(np.rint(hold_music(8.0) * 32768), -32768, 32767).astype("<i2").tobytes()
    pcm, _ = load_speech(JFK)

    async def run() -> tuple[list[Result], str]:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="on-hold")
        try:
            results = await stream_file(client, music + silence(1.0) + pcm + silence(0.6), speed=0)
            status = await asyncio.wait_for(client.status(), 5)
        finally:
            await client.close()
        return results, status

    def screened(status: str) -> int:
        m = re.search(r"non-speech screened (\d+),", status, re.M)
        assert m is not None, status
        return int(m[1])

    async def status_now() -> str:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="on-hold-status")
        try:
            return await asyncio.wait_for(client.status(), 5)
        finally:
            await client.close()

    before = screened(asyncio.run(status_now()))
    results, status = asyncio.run(run())
    assert results and all(r.start_s >= 8.5 for r in results), results  # no text for the music
    assert_transcript(JFK, " ".join(r.text for r in results))
    assert screened(status) >= before + 1, status
