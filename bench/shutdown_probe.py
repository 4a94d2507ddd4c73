"""Shutdown probe (issue 19): SIGTERM under load.

One server (default config, ``model.language: en``, ``server.shutdown_timeout_s`` small, the
AudioSocket door on), ``--loaders`` TCP clients streaming real speech at ``--speed`` times real
time (so utterances queue up for the workers) then ``%f``, one TCP client that streams at real
time and keeps sending after SIGTERM until the server closes, and one AudioSocket call that does
the same.  SIGTERM goes out ``--sigterm-after`` seconds in, while work is queued.  Measured: the
time from SIGTERM to the process's exit and its exit code; for each session how it ended (``%F``,
``%E <reason>``, or closed without a word), when, how many results it got (before and after
SIGTERM) and how the socket closed (EOF or reset); whether the server's stderr has a traceback,
``CancelledError``, a leaked semaphore or a destroyed pending task.

    .venv/bin/python bench/shutdown_probe.py [--loaders 7] [--shutdown-timeout 8] [--json out.json]
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from bench.common import machine_info  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402
from speech import JFK, LIBRI, load_speech, silence  # noqa: E402
from whisper_streaming.wire.audiosocket import audio_frames, uuid_frame  # noqa: E402
from whisper_streaming.wire.protocol import (  # noqa: E402
    MAGIC, Audio, Begin, Error, Finish, Finished, PacketDecoder, Result, Role, StatusRequest, Status, UserId, Welcome, encode_packet,
)

FILES = [JFK, LIBRI, "librispeech_test-clean_1995-1837-0001.wav", "librispeech_test-clean_61-70968-0000.wav"]
CHUNK = 3200  # 100 ms of 16 kHz s16le per %s
STDERR_FLAGS = ("Traceback", "CancelledError", "leaked semaphore", "Task was destroyed", "Exception ignored", "never retrieved")


class Clock:
    def __init__(self) -> None:
        self.sigterm: float | None = None

    def since_sigterm(self, t: float) -> float | None:
        return None if self.sigterm is None else round(t - self.sigterm, 2)


def speech(offset: int, repeats: int) -> bytes:
    """``repeats`` files of :data:`FILES` from ``offset`` on, each followed by 0.6 s of silence."""
    return b"".join(load_speech(FILES[(offset + k) % len(FILES)])[0] + silence(0.6) for k in range(repeats))


async def tcp_session(port: int, name: str, pcm: bytes, speed: float, clock: Clock, *, keep_sending: bool) -> dict:
    """Stream ``pcm`` at ``speed`` x real time then ``%f`` (or, ``keep_sending``: loop it at real
    time and never finish); read everything until the server closes."""
    out: dict = {"name": name, "results": 0, "results_after_sigterm": 0, "ended": None, "told_s": None, "close": None,
                 "close_s": None, "sent_audio_s": 0.0, "sent_after_sigterm_s": 0.0, "send_error": None}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = PacketDecoder(Role.CLIENT)
    welcomed = asyncio.Event()
    closed = asyncio.Event()

    async def read() -> None:
        try:
            while data := await reader.read(65536):
                decoder.receive_data(data)
                while (p := decoder.next_packet()) is not None:
                    now = time.monotonic()
                    if isinstance(p, Welcome):
                        welcomed.set()
                    elif isinstance(p, Result):
                        out["results"] += 1
                        out["results_after_sigterm"] += clock.sigterm is not None
                    elif isinstance(p, (Finished, Error)) and out["ended"] is None:
                        out["ended"] = "%F" if isinstance(p, Finished) else f"%E {p.reason}"
                        out["told_s"] = clock.since_sigterm(now)
            out["close"] = "eof"
        except ConnectionResetError:
            out["close"] = "reset"
        except OSError as exc:
            out["close"] = f"error {exc}"
        out["close_s"] = clock.since_sigterm(time.monotonic())
        closed.set()

    reading = asyncio.create_task(read())
    writer.write(MAGIC + encode_packet(UserId(name)))
    await asyncio.wait_for(welcomed.wait(), 30)
    writer.write(encode_packet(Begin()))
    t0 = time.monotonic()
    sent = 0
    pace = 1.0 if keep_sending else speed
    try:
        while not closed.is_set() and (keep_sending or sent < len(pcm)):
            i = sent % len(pcm)
            writer.write(encode_packet(Audio(pcm[i:i + CHUNK])))
            sent += len(pcm[i:i + CHUNK])
            out["sent_audio_s"] = round(sent / 32000, 1)
            if clock.sigterm is not None:
                out["sent_after_sigterm_s"] = round(out["sent_after_sigterm_s"] + min(CHUNK, len(pcm) - i) / 32000, 1)
            await asyncio.wait_for(writer.drain(), 30)
            await asyncio.sleep(max(0.0, t0 + sent / 32000 / pace - time.monotonic()))
        if not keep_sending and not closed.is_set():
            writer.write(encode_packet(Finish()))
            await writer.drain()
    except (OSError, asyncio.TimeoutError) as exc:
        out["send_error"] = type(exc).__name__
    return await _until_closed(reading, writer, out)


async def _until_closed(reading: asyncio.Task, writer: asyncio.StreamWriter, out: dict) -> dict:
    """Wait (at most 120 s) for the reader task to see the server close, then close our side."""
    try:
        await asyncio.wait_for(asyncio.shield(reading), 120)
    except asyncio.TimeoutError:
        out["close"] = "still open after 120 s"
        reading.cancel()
    writer.close()
    return out


async def audiosocket_call(port: int, pcm: bytes, clock: Clock) -> dict:
    """An AudioSocket call at real time (16 kHz frames) that never hangs up; ends when the server closes."""
    call_id = str(uuid.uuid4())
    out: dict = {"call_id": call_id, "close": None, "close_s": None, "sent_after_sigterm_s": 0.0}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = asyncio.Event()

    async def read() -> None:
        try:
            while await reader.read(65536):
                pass
            out["close"] = "eof"
        except ConnectionResetError:
            out["close"] = "reset"
        out["close_s"] = clock.since_sigterm(time.monotonic())
        closed.set()

    reading = asyncio.create_task(read())
    writer.write(uuid_frame(call_id))
    frames = list(audio_frames(pcm, 16000, 20))
    t0, n = time.monotonic(), 0
    try:
        while not closed.is_set():
            writer.write(frames[n % len(frames)])
            n += 1
            if clock.sigterm is not None:
                out["sent_after_sigterm_s"] = round(out["sent_after_sigterm_s"] + 0.02, 2)
            await asyncio.wait_for(writer.drain(), 30)
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))
    except (OSError, asyncio.TimeoutError) as exc:
        out["send_error"] = type(exc).__name__
    return await _until_closed(reading, writer, out)


async def queue_depth(port: int) -> str:
    """The ``utterances queued`` and engine lines of a fresh ``%c`` (a probe connection, no session)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(MAGIC + encode_packet(StatusRequest()))
    decoder = PacketDecoder(Role.CLIENT)
    try:
        while True:
            decoder.receive_data(await asyncio.wait_for(reader.read(65536), 10))
            if (p := decoder.next_packet()) is not None and isinstance(p, Status):
                return "; ".join(line for line in p.text.splitlines() if line.startswith(("engine", "utterances queued", "sessions:")))
    finally:
        writer.close()


async def run(server: ServerProcess, args: argparse.Namespace) -> dict:
    clock = Clock()
    tasks = [asyncio.create_task(tcp_session(server.port, f"loader{i}", speech(i, args.repeats), args.speed, clock, keep_sending=False))
             for i in range(args.loaders)]
    tasks.append(asyncio.create_task(tcp_session(server.port, "keeper", speech(0, 4), 1.0, clock, keep_sending=True)))
    call = asyncio.create_task(audiosocket_call(server.audiosocket_port, speech(1, 4), clock)) if server.audiosocket_port else None
    await asyncio.sleep(args.sigterm_after - 0.3)
    status = await queue_depth(server.port)
    clock.sigterm = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    try:
        code = await asyncio.wait_for(asyncio.to_thread(server.proc.wait), args.shutdown_timeout + 60)
    except asyncio.TimeoutError:
        code = None
    exit_s = round(time.monotonic() - clock.sigterm, 2)
    sessions = await asyncio.gather(*tasks)
    return {"status_at_sigterm": status, "exit_code": code, "exit_s": exit_s, "sessions": sessions,
            "audiosocket": await call if call is not None else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loaders", type=int, default=7, help="TCP clients streaming faster than real time")
    p.add_argument("--speed", type=float, default=4.0, help="their pace, x real time")
    p.add_argument("--repeats", type=int, default=4, help="speech files each loader streams (each 5-11 s)")
    p.add_argument("--sigterm-after", type=float, default=6.0, help="seconds after the clients start")
    p.add_argument("--shutdown-timeout", type=float, default=8.0, help="server.shutdown_timeout_s")
    p.add_argument("--no-audiosocket", action="store_true")
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument("--log", type=Path, help="keep the server's log here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        text = f"model:\n  language: en\nserver:\n  shutdown_timeout_s: {args.shutdown_timeout}\nresults:\n  jsonl_path: {tmp}/results.jsonl\n"
        if not args.no_audiosocket:
            text += "audiosocket:\n  enabled: true\n  port: 0\n"
        config.write_text(text, encoding="utf-8")
        log_path = Path(tmp) / "server.log"
        server = ServerProcess(config=config, log_path=log_path)
        try:
            got = asyncio.run(run(server, args))
        finally:
            server.stop(timeout_s=5)
        log = log_path.read_text(encoding="utf-8")
        if args.log:
            args.log.write_text(log, encoding="utf-8")
        results_log = [json.loads(line) for line in (Path(tmp) / "results.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    call = got["audiosocket"]
    if call is not None:
        call["results_in_sinks"] = sum(r.get("user_id") == call["call_id"] for r in results_log)
        call["server_call_end"] = next((line.split("call end: ")[-1] for line in log.splitlines() if "call end:" in line), None)
    sessions = got["sessions"]
    summary = {
        "machine": machine_info(),
        "scenario": {k: v for k, v in vars(args).items() if k not in ("json", "log")},
        "status_at_sigterm": got["status_at_sigterm"],
        "exit_code": got["exit_code"],
        "exit_after_sigterm_s": got["exit_s"],
        "within_timeout": got["exit_s"] <= args.shutdown_timeout,
        "ended": {e: sum(str(s["ended"]) == e for s in sessions) for e in sorted({str(s["ended"]) for s in sessions})},
        "untold": [s["name"] for s in sessions if s["ended"] is None],
        "sessions": sessions,
        "audiosocket": call,
        "stderr_flags": {flag: log.count(flag) for flag in STDERR_FLAGS},
        "shutdown_log": [line.split(": ", 1)[-1] for line in log.splitlines()
                         if any(k in line for k in ("shutting down", "shutdown timeout", "stopped", "WARNING", "ERROR"))][:40],
    }
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
