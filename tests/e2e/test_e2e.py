"""End to end: the real ``tcp_server.py`` process, the bundled Whisper base model, real speech.

Every error case runs while a well-behaved session streams on the same server, and that
session must still get its full transcript.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile

from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.client.cli import stream_file
from whisper_streaming.errors import ServerError
from bench.server_process import REPO_ROOT, ServerProcess
from whisper_streaming.wire.protocol import MAGIC, Begin, Error, UserId, encode_packet

from speech import DATA, E2E_CONFIG, JFK, LIBRI, assert_transcript, good_session, load_speech, raw_exchange, silence, speech_files, worker_pids

pytestmark = pytest.mark.e2e



@pytest.mark.parametrize("path", speech_files(), ids=lambda p: p.stem)
def test_transcribes_real_speech(server: ServerProcess, path: Path) -> None:
    pcm, _ = load_speech(path.name)

    async def run() -> list:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="wer")
        try:
            return await stream_file(client, pcm + silence(0.6), speed=0)
        finally:
            await client.close()

    results = asyncio.run(run())
    assert results, "no %R at all"
    assert_transcript(path.name, " ".join(r.text for r in results))
    duration_s = len(pcm) / 2 / 16000
    ends = [r.end_s for r in results]
    assert ends == sorted(ends)
    for r in results:
        assert 0.0 <= r.start_s < r.end_s <= duration_s + 0.7


def test_two_concurrent_sessions_get_their_own_text(server: ServerProcess) -> None:
    async def run() -> tuple[str, str]:
        return await asyncio.gather(good_session(server.port, JFK, speed=3, user="a"), good_session(server.port, LIBRI, speed=3, user="b"))

    jfk_text, libri_text = asyncio.run(run())
    assert_transcript(JFK, jfk_text)
    assert_transcript(LIBRI, libri_text)
    assert "quilter" not in jfk_text.lower() and "country" not in libri_text.lower()


def test_new_stream_after_finish_restarts_times(server: ServerProcess) -> None:
    pcm, _ = load_speech(LIBRI)

    async def run() -> tuple[list, list]:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="twice")
        try:
            first = await stream_file(client, silence(3.0) + pcm + silence(0.6), speed=0)
            second = await stream_file(client, pcm + silence(0.6), speed=0)
            return first, second
        finally:
            await client.close()

    first, second = asyncio.run(run())
    assert first[0].start_s >= 2.5
    assert second[0].start_s < 1.0
    assert_transcript(LIBRI, " ".join(r.text for r in second))


def test_status_during_streaming(server: ServerProcess) -> None:
    pcm, _ = load_speech(JFK)

    async def run() -> tuple[str, str]:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="status")
        try:
            await client.begin()
            await client.send_audio(pcm[: len(pcm) // 2])
            status = await asyncio.wait_for(client.status(), 5)
            await client.send_audio(pcm[len(pcm) // 2 :] + silence(0.6))
            results = await client.finish()
        finally:
            await client.close()
        return status, " ".join(r.text for r in results)

    status, text = asyncio.run(run())
    lines = status.splitlines()
    assert re.fullmatch(r"engine 0: (running|idle|busy|starting|restarting)", lines[0]), status
    assert re.search(r"^sessions: [1-4]/4$", status, re.M), status
    assert re.search(r"^utterances queued: \d+$", status, re.M), status
    assert re.search(r"^decoding guards: loops \d+, loops cut \d+, time limited \d+, no-speech fragments dropped \d+, non-speech screened \d+, language switches refused \d+$", status, re.M), status
    assert_transcript(JFK, text)


def _speculation_counts(port: int) -> tuple[int, int]:
    async def run() -> str:
        client = await AsyncStreamingClient.connect("127.0.0.1", port, user_id="spec-status")
        try:
            return await asyncio.wait_for(client.status(), 5)
        finally:
            await client.close()

    status = asyncio.run(run())
    m = re.search(r"^speculative transcriptions: started (\d+), used (\d+)$", status, re.M)
    assert m is not None
    stopped = re.search(r"^withdrawn jobs stopped early: (\d+)$", status, re.M)
    assert stopped is not None and int(stopped[1]) <= int(m[1]) - int(m[2]), status  # only withdrawn ones stop
    return int(m[1]), int(m[2])


def test_speculative_transcription_is_used_at_low_load(server: ServerProcess, tmp_path: Path) -> None:
    """One session: an utterance goes to a worker once its trailing audio is in (before the
    480 ms endpoint) and the endpoint's Transcribe takes that job over, on the shared
    one-worker server (``server.speculation_idle_engines: 1``, the default: the last idle engine
    may speculate).  With two workers and ``speculation_idle_engines: 2`` a lone session still
    speculates (two are idle between its utterances)."""
    # JFK: two utterances, no pause of 180-480 ms that would start a speculation to withdraw
    before = _speculation_counts(server.port)
    assert_transcript(JFK, asyncio.run(good_session(server.port, JFK, speed=2.0, user="spec1")))
    after = _speculation_counts(server.port)
    assert after[1] - before[1] >= 1 and after[0] - before[0] >= after[1] - before[1], (before, after)

    config = tmp_path / "two_workers.yaml"
    config.write_text(E2E_CONFIG.replace("channel: 1", "channel: 2").replace("server:\n", "server:\n  speculation_idle_engines: 2\n"), encoding="utf-8")
    with ServerProcess(config=config, log_path=tmp_path / "server.log") as two:
        text = asyncio.run(good_session(two.port, JFK, speed=1.0, user="spec"))
        started, used = _speculation_counts(two.port)
    assert_transcript(JFK, text)
    assert used >= 1 and started >= used, (started, used)


def test_status_before_login(server: ServerProcess) -> None:
    packets, _ = asyncio.run(raw_exchange(server.port, MAGIC + b"%c0000", wait_s=1.0))
    assert packets and packets[0].text.startswith("engine 0: ")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (MAGIC + b"%x0000", "UNKNOWN_HEADER"),
        (MAGIC + encode_packet(UserId("bad")) + b"%sZZZZ", "BAD_LENGTH"),
        (MAGIC + encode_packet(UserId("bad")) + encode_packet(Begin()) + b"%s0003abc", "ODD_PCM_LENGTH"),
        (MAGIC + encode_packet(UserId("bad")) + b"%s0002\x00\x00", "AUDIO_BEFORE_BEGIN"),
        (MAGIC + encode_packet(Begin()), "BEGIN_BEFORE_USER"),
        (MAGIC + encode_packet(UserId("bad")) + encode_packet(UserId("again")), "DUPLICATE_USER"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_packet_gets_error_and_close_while_other_session_works(server: ServerProcess, payload: bytes, expected: str) -> None:
    async def run() -> tuple[str, tuple[list, bool]]:
        return await asyncio.gather(good_session(server.port, LIBRI, speed=2), raw_exchange(server.port, payload))

    text, (packets, closed) = asyncio.run(run())
    errors = [p for p in packets if isinstance(p, Error)]
    assert errors and errors[0].reason == expected, packets
    assert isinstance(packets[-1], Error)
    assert closed
    assert_transcript(LIBRI, text)


def test_bad_magic_closes_without_reply(server: ServerProcess) -> None:
    async def run() -> tuple[str, tuple[list, bool]]:
        return await asyncio.gather(good_session(server.port, LIBRI, speed=2), raw_exchange(server.port, b"HELLO / HTTP/1.1\r\n\r\n"))

    text, (packets, closed) = asyncio.run(run())
    assert packets == [] and closed
    assert_transcript(LIBRI, text)


def test_idle_timeout(server: ServerProcess) -> None:
    async def run() -> tuple[str, tuple[list, bool], float]:
        t0 = time.monotonic()
        idle = asyncio.create_task(raw_exchange(server.port, MAGIC + encode_packet(UserId("idle")), wait_s=15))
        text = await good_session(server.port, JFK, speed=1.5)  # ~7 s, longer than the 4 s timeout
        idle_result = await idle
        return text, idle_result, time.monotonic() - t0

    text, (packets, closed), _ = asyncio.run(run())
    assert [type(p).__name__ for p in packets] == ["Welcome", "Error"]
    assert packets[-1].reason == "TIMEOUT" and closed
    assert_transcript(JFK, text)


def test_server_too_busy(server: ServerProcess) -> None:
    async def run() -> tuple[str, list[str]]:
        good = asyncio.create_task(good_session(server.port, JFK, speed=2))
        await asyncio.sleep(0.5)
        holders = [await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id=f"h{i}") for i in range(3)]
        reasons = []
        try:
            for _ in range(2):
                try:
                    extra = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="extra")
                    await extra.close()
                    reasons.append("admitted")
                except ServerError as exc:
                    reasons.append(exc.reason)
        finally:
            for h in holders:
                await h.close()
        return await good, reasons

    text, reasons = asyncio.run(run())
    assert reasons == ["SERVER_TOO_BUSY", "SERVER_TOO_BUSY"]
    assert_transcript(JFK, text)


def test_tcp_client_cli(server: ServerProcess) -> None:
    cmd = [sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", "127.0.0.1", "--port", str(server.port)]
    run = subprocess.run([*cmd, "--ifn", str(DATA / LIBRI), "--speed", "0", "--user", "cli"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(re.match(r"\d+\.\d \d+\.\d : ", line) for line in lines), run.stdout
    assert_transcript(LIBRI, " ".join(line.split(" : ", 1)[1] for line in lines))

    status = subprocess.run([*cmd, "--status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and status.stdout.startswith("engine 0: "), status

    missing = subprocess.run([*cmd, "--ifn", str(DATA / "no_such.wav")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 3 and "no such audio file" in missing.stderr


def test_tcp_client_cli_raw_pcm_and_failed_connection(tmp_path: Path, server: ServerProcess) -> None:
    raw = tmp_path / "test.pcm"
    raw.write_bytes(load_speech(LIBRI)[0])
    ok = subprocess.run([sys.executable, str(REPO_ROOT / "tcp_client.py"), "--port", str(server.port), "--ifn", str(raw), "--speed", "0"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "quilter" in ok.stdout.lower(), ok
    with_closed_port = subprocess.run([sys.executable, str(REPO_ROOT / "tcp_client.py"), "--port", "1", "--ifn", str(raw)], capture_output=True, text=True, timeout=60)
    assert with_closed_port.returncode == 1 and "error:" in with_closed_port.stderr


def test_graceful_shutdown_flushes_and_saves_pcm(tmp_path: Path) -> None:
    """SIGTERM while streaming (no %f): pending audio is transcribed, %R then %F arrive, exit 0."""
    pcm_dir = tmp_path / "pcm"
    config = tmp_path / "shutdown.yaml"
    config.write_text(f"model:\n  language: en\npcm_save:\n  enabled: true\n  dir: {pcm_dir}\n", encoding="utf-8")
    pcm, _ = load_speech(JFK)

    with ServerProcess(config=config) as proc:
        async def run() -> list:
            client = await AsyncStreamingClient.connect("127.0.0.1", proc.port, user_id="../../evil/user")
            await client.begin()
            await client.send_audio(pcm)  # ends mid-speech: no trailing silence, no %f
            await asyncio.sleep(0.3)
            proc.proc.send_signal(signal.SIGTERM)
            events = []
            try:
                while True:
                    event = await asyncio.wait_for(client.receive(), 60)
                    events.append(event)
                    if type(event).__name__ == "Finished":
                        break
            finally:
                await client.close()
            return events

        events = asyncio.run(run())
        code = proc.stop(timeout_s=60)
    assert code == 0
    assert type(events[-1]).__name__ == "Finished"
    assert_transcript(JFK, " ".join(e.text for e in events[:-1]))
    saved = list(pcm_dir.iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("_.._evil_user_") and saved[0].suffix == ".wav"
    data, rate = soundfile.read(saved[0], dtype="int16")
    assert rate == 16000 and data.tobytes() == pcm


def test_bad_config_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  chanel: 2\nvad:\n  mode: 7\n", encoding="utf-8")
    run = subprocess.run([sys.executable, str(REPO_ROOT / "tcp_server.py"), "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "model.chanel: unknown key" in run.stderr and "vad.mode" in run.stderr


def test_handshake_timeout_closes_without_reply(server: ServerProcess) -> None:
    async def run() -> tuple[list, bool, float]:
        t0 = time.monotonic()
        packets, closed = await raw_exchange(server.port, MAGIC[:10], wait_s=10)
        return packets, closed, time.monotonic() - t0

    packets, closed, elapsed = asyncio.run(run())
    assert packets == [] and closed
    assert 1.5 <= elapsed < 8  # handshake_timeout_s is 2 in the test config



def test_worker_killed_mid_utterance_is_restarted_and_retried(server: ServerProcess) -> None:
    """SIGKILL the ASR worker while it transcribes: the utterance is retried and its %R still arrives."""
    pcm, _ = load_speech(JFK)

    async def run() -> tuple[str, str, list[int]]:
        client = await AsyncStreamingClient.connect("127.0.0.1", server.port, user_id="victim")
        try:
            await client.begin()
            await client.send_audio(pcm + silence(0.6))
            killed: list[int] = []
            for _ in range(100):  # wait until the worker is busy, then kill it
                if "engine 0: busy" in await client.status():
                    break
                await asyncio.sleep(0.02)
            for pid in worker_pids(server.pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            results = await client.finish()
            status = await client.status()
        finally:
            await client.close()
        return " ".join(r.text for r in results), status, killed

    before = worker_pids(server.pid)
    text, status, killed = asyncio.run(run())
    assert killed and killed[0] in before
    assert_transcript(JFK, text)
    restarts = int(re.search(r"worker restarts: (\d+)", status).group(1))
    assert restarts >= 1
    after = worker_pids(server.pid)
    assert after and not set(after) & set(killed)
