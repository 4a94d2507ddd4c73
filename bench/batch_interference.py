"""Does a batch job slow the live streams down?  Final latency of real-time streams alone, and
while a long file is transcribed (with diarization and features) through ``POST /v1/jobs`` on
the same server.

Starts one server (``--config``, default: the shipped defaults), then runs
``bench/stream_bench.py --port ...`` at ``--streams`` twice: alone, and with a job running the
whole time (the file is re-submitted when a job completes).  Prints both runs' p50/p95 final
latency and their ratio, the batch audio seconds done meanwhile, and records the machine.

Usage: ``.venv/bin/python bench/batch_interference.py [--streams 1] [--minutes 10] [--config config_vad.yaml]``
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.batch_bench import build  # noqa: E402
from bench.common import machine_info  # noqa: E402
from bench.server_process import ServerProcess  # noqa: E402


def stream_run(port: int, pid: int, streams: str, out: Path) -> dict[str, object]:
    subprocess.run([sys.executable, str(ROOT / "bench" / "stream_bench.py"), "--port", str(port), "--server-pid", str(pid),
                    "--streams", streams, "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


class BatchLoad(threading.Thread):
    """Keeps one job running on the server until stopped; counts the audio seconds completed."""

    def __init__(self, http_port: int, wav: bytes, duration_s: float) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{http_port}/v1/jobs"
        self.wav, self.duration_s = wav, duration_s
        self.stop = threading.Event()
        self.done_s = 0.0
        self.progress_s = 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            job = httpx2.post(self.base, files={"file": ("long.wav", self.wav)}, data={"diarize": "true", "features": "true"},
                              timeout=120).json()
            while not self.stop.is_set():
                view = httpx2.get(f"{self.base}/{job['id']}", timeout=10).json()
                self.progress_s = self.done_s + view["progress"] / 100 * self.duration_s
                if view["status"] in ("completed", "failed", "cancelled"):
                    self.done_s += self.duration_s if view["status"] == "completed" else 0.0
                    break
                time.sleep(0.5)
            else:
                httpx2.delete(f"{self.base}/{job['id']}", timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="1")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    samples, _, _ = build(args.minutes)
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="WAV", subtype="PCM_16")
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(config=args.config) as server:
        assert server.http_port
        alone = stream_run(server.port, server.pid, args.streams, Path(tmp) / "alone.json")
        load = BatchLoad(server.http_port, buf.getvalue(), len(samples) / 16000)
        load.start()
        time.sleep(5.0)  # the job is under way (decoding, first chunks)
        t0 = time.monotonic()
        loaded = stream_run(server.port, server.pid, args.streams, Path(tmp) / "loaded.json")
        wall_s = time.monotonic() - t0
        load.stop.set()
        load.join(timeout=60)
    rows = []
    for a, b in zip(alone["runs"], loaded["runs"]):
        rows.append({"streams": a["streams"],
                     "p50_alone_s": a["latency_p50_s"], "p50_with_batch_s": b["latency_p50_s"],
                     "p95_alone_s": a["latency_p95_s"], "p95_with_batch_s": b["latency_p95_s"],
                     "p50_ratio": round(b["latency_p50_s"] / a["latency_p50_s"], 3),
                     "p95_ratio": round(b["latency_p95_s"] / a["latency_p95_s"], 3),
                     "errors": [a["errors"], b["errors"]], "wer": [a.get("wer"), b.get("wer")]})
    report = {"machine": machine_info(), "rows": rows, "batch_audio_s_during_streams": round(load.progress_s, 1),
              "streams_wall_s": round(wall_s, 1)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
