"""End to end, telephone audio (issue 7): an 8 kHz recording streamed through the real server
as 8 kHz mu-law (``%o sample_rate=8000;encoding=mulaw``) and, for comparison, as 16 kHz s16le."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile

from whisper_streaming.core import audio_format
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.client.cli import load_for_stream, stream_file
from bench.server_process import ServerProcess
from whisper_streaming.client import Result

from speech import DATA, normalized_wer

pytestmark = pytest.mark.e2e

TEL = DATA / "tel" / "asterisk_core_en_tt-allbusy.wav"


def _stream(port: int, sample_rate: int, encoding: str) -> list[Result]:
    wire = load_for_stream(str(TEL), sample_rate=sample_rate, encoding=encoding)
    tail = audio_format.encode(np.zeros(int(0.6 * sample_rate), dtype=np.int16), encoding)

    async def run() -> list[Result]:
        client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id=f"tel{sample_rate}")
        try:
            if (sample_rate, encoding) != (16000, "pcm_s16le"):
                accepted = await client.set_options(sample_rate=sample_rate, encoding=encoding)
                assert accepted == {"sample_rate": sample_rate, "encoding": encoding}
            return await stream_file(client, wire + tail, speed=0, sample_rate=sample_rate, encoding=encoding)
        finally:
            await client.close()

    return asyncio.run(run())


def test_8khz_mulaw_is_about_as_good_as_16khz(server: ServerProcess) -> None:
    reference = TEL.with_suffix(".txt").read_text(encoding="utf-8").strip()
    duration_s = soundfile.info(str(TEL)).duration
    wers, times = {}, {}
    for rate, encoding in ((8000, "mulaw"), (16000, "pcm_s16le")):
        results = _stream(server.port, rate, encoding)
        assert results, f"no %R at all ({rate} Hz {encoding})"
        for r in results:  # seconds of the caller's audio at either rate
            assert 0.0 <= r.start_s < r.end_s <= duration_s + 0.7
        wers[rate] = normalized_wer(reference, " ".join(r.text for r in results))
        times[rate] = (results[0].start_s, results[-1].end_s)
    print(f"normalized WER: 8 kHz mu-law {wers[8000]:.3f}, 16 kHz s16le {wers[16000]:.3f}")
    # Whisper base gets both paths word-perfect on this 24-word prompt (2026-11); allow 2 errors.
    assert wers[8000] <= 0.10
    assert wers[8000] <= wers[16000] + 0.10
    assert times[8000] == pytest.approx(times[16000], abs=0.1)  # same VAD cuts, same seconds
