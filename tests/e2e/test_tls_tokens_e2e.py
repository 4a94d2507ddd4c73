"""End to end, TLS and tokens (issue 13): a dedicated server with ``tls`` (a certificate made in the
test) and ``auth.token_file``; the shipped recording transcribed over TLS with the right token on
the TCP port (the client library and ``tcp_client.py``) and over WSS; a wrong token, no token and
a plain client refused; ``/metrics`` over HTTPS only with ``Authorization: Bearer``."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from bench.server_process import REPO_ROOT, ServerProcess
from speech import DATA, E2E_CONFIG, JFK, assert_transcript, load_speech, silence
from tls_certs import ServerFiles, make_server_files
from whisper_streaming.client.cli import TOKEN_ENV, stream_file
from whisper_streaming.client.streaming import AsyncStreamingClient
from whisper_streaming.errors import ConnectionClosedError, ServerError

pytestmark = pytest.mark.e2e


def test_tls_and_tokens_end_to_end(tmp_path: Path) -> None:
    files = make_server_files(tmp_path / "tls")
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "tokens.txt"
    token_file.write_text(f"# issued for the e2e test\n{token}\n", encoding="utf-8")
    config = tmp_path / "tls_tokens.yaml"
    config.write_text(E2E_CONFIG + f"tls:\n  cert_file: {files.cert_file}\n  key_file: {files.key_file}\n"
                                   f"auth:\n  token_file: {token_file}\n", encoding="utf-8")
    pcm, _ = load_speech(JFK)

    with ServerProcess(config=config, log_path=tmp_path / "server.log") as proc:

        async def transcribe(user: str, **kw: object) -> str:
            client = await AsyncStreamingClient.connect("127.0.0.1", proc.port, user_id=user, ssl=files.client_context(), **kw)  # type: ignore[arg-type]
            try:
                results = await stream_file(client, pcm + silence(0.6), speed=0)
            finally:
                await client.close()
            return " ".join(r.text for r in results)

        assert_transcript(JFK, asyncio.run(transcribe("tls-token", token=token)))

        for kw in ({"token": token[::-1]}, {}):  # a wrong token at login; no token at the first %b
            with pytest.raises(ServerError) as info:
                asyncio.run(transcribe("intruder", **kw))
            assert info.value.reason == "UNAUTHORIZED"

        async def plain() -> None:
            client = await AsyncStreamingClient.connect("127.0.0.1", proc.port, user_id="plain", token=token, timeout_s=5)
            await client.close()

        with pytest.raises((ConnectionClosedError, OSError, asyncio.TimeoutError)):
            asyncio.run(plain())

        cli = subprocess.run([sys.executable, str(REPO_ROOT / "tcp_client.py"), "--ip", "127.0.0.1", "--port", str(proc.port),
                              "--ca", str(files.ca_file), "--ifn", str(DATA / JFK), "--speed", "0"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, TOKEN_ENV: token})
        assert cli.returncode == 0, cli.stderr
        assert_transcript(JFK, " ".join(line.split(" : ", 1)[1] for line in cli.stdout.splitlines()))
        assert proc.http_port is not None
        assert_transcript(JFK, asyncio.run(websocket_transcript(proc.http_port, files.client_context(), pcm + silence(0.6), token)))
        refused = asyncio.run(websocket_refused(proc.http_port, files.client_context(), token[::-1]))
        assert refused == ([{"type": "error", "reason": "UNAUTHORIZED"}], 1008)

        assert https_get(proc.http_port, "/health", files)[0] == 200
        assert https_get(proc.http_port, "/metrics", files)[0] == 401
        status, body = https_get(proc.http_port, "/metrics", files, token)
        assert status == 200 and "# TYPE" in body
        log = proc.log_text()

    assert f"listening on 127.0.0.1:{proc.port} (TLS)" in log and f"http listening on 127.0.0.1:{proc.http_port}" in log
    assert "tokens: required (1 valid)" in log
    assert token not in log and token[::-1] not in log  # never logged


async def websocket_transcript(port: int, tls: ssl.SSLContext, pcm: bytes, token: str) -> str:
    """Stream ``pcm`` over WSS with ``?token=`` (100 ms frames, as fast as possible); the finals' text."""
    async with websockets.connect(f"wss://127.0.0.1:{port}/v1/stream?token={token}", ssl=tls) as ws:
        await ws.send(json.dumps({"type": "start", "user": "wss"}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i : i + 3200])
        await ws.send(json.dumps({"type": "finish"}))
        texts = []
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] != "finished":
            assert message["type"] != "error", message
            if message["type"] == "final":
                texts.append(message["text"])
    return " ".join(texts)


async def websocket_refused(port: int, tls: ssl.SSLContext, token: str) -> tuple[list[dict[str, object]], int | None]:
    """A start with ``token``: the messages until the close, and the close code."""
    async with websockets.connect(f"wss://127.0.0.1:{port}/v1/stream", ssl=tls) as ws:
        await ws.send(json.dumps({"type": "start", "token": token}))
        got = []
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed:
            pass
    return got, ws.close_code


def https_get(port: int, path: str, files: ServerFiles, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=files.client_context(), timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        conn.close()
