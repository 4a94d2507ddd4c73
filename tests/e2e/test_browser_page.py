"""The live-caption page (``whisper_streaming/transports/web/static``) in a real browser.

Debian's ``chromium`` (``/usr/bin/chromium``) driven by Playwright, headless, with the
microphone faked by Chromium itself (``--use-fake-device-for-media-stream
--use-file-for-fake-audio-capture=<wav>%noloop``), so the page's whole capture path runs:
getUserMedia, the AudioContext at its native rate, the AudioWorklet's resampler, the binary
WebSocket frames.

* the resampler of ``pcm-worklet.js`` run in the page on tones: the passband keeps its level, a
  tone above 8 kHz is removed instead of folding back into the speech band;
* the page served from its static directory by a small HTTP server, its WebSocket answered by a
  script (Playwright's ``route_web_socket``): the frames are 16 kHz PCM of what the fake
  microphone plays, captions render (a partial replaced in place with its unstable tail grey, a
  final with its time and sentiment badge in the ``aria-live`` region, the summary), and a refused
  microphone, a failed socket and an ``error`` message are shown;
* the real server (bundled model) on jfk.wav played as the microphone: the spoken sentence
  appears on the page, with no page errors.  ``WS_PAGE_SCREENSHOT=docs/page.png`` also saves a
  screenshot of that page (the README's).

Never skipped: without chromium or playwright these tests fail (``.ci/run`` installs chromium).
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, WebSocketRoute, sync_playwright

from bench.server_process import REPO_ROOT, ServerProcess
from speech import DATA, E2E_CONFIG, JFK, normalized_wer
from whisper_streaming.client.audio_files import load_pcm16

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
STATIC = REPO_ROOT / "whisper_streaming" / "transports" / "web" / "static"
STREAM_URL = re.compile(r"/v1/stream(\?.*)?$")


# ---- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as pw:
        yield pw


def launch(pw: Playwright, microphone_wav: Path | None, *, deny_microphone: bool = False) -> Browser:
    """Headless chromium whose microphone plays ``microphone_wav`` once (then silence);
    ``None``: Chromium's built-in fake device (beeps)."""
    args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream=deny" if deny_microphone else "--use-fake-ui-for-media-stream"]
    if microphone_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={microphone_wav}%noloop")
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)


def write_wav(path: Path, samples: np.ndarray, rate_hz: int) -> Path:
    """16-bit PCM WAV (what Chromium's fake capture reads)."""
    soundfile.write(path, np.clip(samples, -1.0, 1.0), rate_hz, subtype="PCM_16")
    return path


class PageWatch:
    """A page's uncaught exceptions and console errors."""

    def __init__(self, page: Page) -> None:
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, page: Page) -> None:
    """Poll ``condition`` (letting the page's events run) until it holds; fail with the page's state."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            state = page.evaluate("() => [document.body.dataset.state, document.getElementById('status').textContent, document.getElementById('error').textContent]")
            pytest.fail(f"timed out waiting for {what}; page state, status, error: {state}")
        page.wait_for_timeout(100)


# ---- the page on a scripted server --------------------------------------------------------------


class _StaticHandler(SimpleHTTPRequestHandler):
    """``/`` -> index.html, ``/static/<file>`` -> the file: the paths the web door serves."""

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path == "/":
            path = "/index.html"
        elif path.startswith("/static/"):
            path = path[len("/static") :]
        else:
            path = "/does-not-exist"
        return super().translate_path(path)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    """The page served from the static directory (no WebSocket endpoint: a route supplies it)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_StaticHandler, directory=str(STATIC)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class ScriptedServer:
    """Answers the page's ``/v1/stream``: records what it sends; ``started`` for a start and
    ``finished`` for a finish unless told otherwise."""

    def __init__(self, page: Page, *, answer_finish: bool = True) -> None:
        self.messages: list[dict] = []
        self.frames: list[bytes] = []
        self.urls: list[str] = []
        self.route: WebSocketRoute | None = None
        self.answer_finish = answer_finish
        page.route_web_socket(STREAM_URL, self._connect)

    def _connect(self, ws: WebSocketRoute) -> None:
        self.route = ws
        self.urls.append(ws.url)
        ws.on_message(self._message)

    def _message(self, message: str | bytes) -> None:
        assert self.route is not None
        if isinstance(message, bytes):
            self.frames.append(message)
            return
        msg = json.loads(message)
        self.messages.append(msg)
        if msg["type"] == "start":
            self.send({"type": "started", "options": {"sample_rate": msg.get("sample_rate"), "partials": True, "sentiment": bool(msg.get("sentiment"))}})
        elif msg["type"] == "finish" and self.answer_finish:
            self.send({"type": "finished"})

    def send(self, msg: dict) -> None:
        assert self.route is not None
        self.route.send(json.dumps(msg))

    def audio_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


class Spectrum:
    """A Hann-windowed power spectrum of int16 ``pcm`` at ``rate_hz``."""

    def __init__(self, pcm: np.ndarray, rate_hz: int) -> None:
        x = pcm.astype(np.float64) / 32768.0
        self.power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
        self.freqs = np.fft.rfftfreq(len(x), 1.0 / rate_hz)

    def peak_hz(self) -> float:
        return float(self.freqs[np.argmax(self.power)])

    def band_db(self, lo_hz: float, hi_hz: float) -> float:
        """Power (dB) of the strongest bin between ``lo_hz`` and ``hi_hz``."""
        return float(10 * np.log10(self.power[(self.freqs >= lo_hz) & (self.freqs <= hi_hz)].max() + 1e-30))


def test_microphone_reaches_the_socket_as_16khz_pcm_without_aliasing(playwright: Playwright, static_url: str, tmp_path: Path) -> None:
    """The fake microphone plays 1 kHz + 9 kHz at 48 kHz.  The frames must be 16-bit PCM at
    16 kHz (the 1 kHz tone at 1 kHz, not at 333 or 363 Hz as mislabeled 48 or 44.1 kHz audio
    would put it), and the 9 kHz tone, above the 8 kHz Nyquist frequency, must be filtered out:
    sample dropping would fold it to 7 kHz at full strength, block averaging at -5 dB."""
    rate = 48000
    t = np.arange(int(4.0 * rate)) / rate
    tones = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 9000 * t)
    wav = write_wav(tmp_path / "tones.wav", np.concatenate([np.zeros(rate // 2), tones, np.zeros(rate // 2)]), rate)
    browser = launch(playwright, wav)
    try:
        page = browser.new_page()
        watch = PageWatch(page)
        server = ScriptedServer(page)
        page.goto(static_url + "?token=s3cret")
        page.get_by_role("button", name="Start").click()
        wait_until(lambda: server.audio_bytes() >= 3 * 32000, 30, "3 s of audio frames", page)
        page.get_by_role("button", name="Stop").click()
        wait_until(lambda: page.evaluate("document.body.dataset.state") == "idle", 15, "the end of the recording", page)
        context_rate = page.evaluate("new AudioContext().sampleRate")
    finally:
        browser.close()

    assert server.urls[0].startswith("ws://") and server.urls[0].endswith("/v1/stream?token=s3cret"), server.urls
    start, *rest = server.messages
    assert start == {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "partials": True, "sentiment": False}
    assert rest == [{"type": "finish"}]
    sizes = [len(f) for f in server.frames]
    assert all(size == 1280 for size in sizes[:-1]) and 0 < sizes[-1] <= 1280 and sizes[-1] % 2 == 0, sizes  # 40 ms frames
    pcm = np.frombuffer(b"".join(server.frames), dtype="<i2")
    loud = np.flatnonzero(np.abs(pcm) > 3000)
    assert len(loud) > 0, "the tone never arrived"
    tone = pcm[loud[0] + 1600 : loud[-1] - 1600]  # steady part, 100 ms in from each edge
    assert len(tone) >= 16000, f"only {len(tone)} samples of tone (context at {context_rate} Hz)"
    spectrum = Spectrum(tone[:32000], 16000)
    peak = spectrum.peak_hz()
    assert abs(peak - 1000) < 10, f"tone at {peak:.0f} Hz, not 1000 Hz: frames are not 16 kHz (context at {context_rate} Hz)"
    folded_db = spectrum.band_db(6900, 7100) - spectrum.band_db(950, 1050)
    assert folded_db < -50, f"9 kHz folded to 7 kHz at {folded_db:.1f} dB"
    assert watch.page_errors == [] and watch.console_errors == []


def test_captions_partials_finals_sentiment_and_summary(playwright: Playwright, static_url: str) -> None:
    browser = launch(playwright, None)
    try:
        page = browser.new_page()
        watch = PageWatch(page)
        server = ScriptedServer(page)
        page.goto(static_url)
        assert page.locator("#finals").get_attribute("aria-live") == "polite"
        page.get_by_label("Sentiment").check()
        page.get_by_role("button", name="Start").click()
        wait_until(lambda: server.frames != [], 15, "audio", page)
        assert server.messages[0]["sentiment"] is True
        assert page.get_by_role("button", name="Start").is_disabled() and page.get_by_role("button", name="Stop").is_enabled()

        server.send({"type": "partial", "start": 0.48, "end": 1.5, "stable": "And so my", "unstable": "fellow Amer"})
        partial = page.locator("#partial")
        partial.wait_for(state="visible")
        assert partial.locator(".stable").inner_text() == "And so my"
        assert partial.locator(".unstable").inner_text().strip() == "fellow Amer"
        assert partial.inner_text().replace("\n", " ").endswith("And so my fellow Amer")
        stable_color = partial.locator(".stable").evaluate("e => getComputedStyle(e).color")
        unstable_color = partial.locator(".unstable").evaluate("e => getComputedStyle(e).color")
        assert stable_color != unstable_color, "the unstable tail is not greyed"
        server.send({"type": "partial", "start": 0.48, "end": 2.5, "stable": "And so my fellow", "unstable": "Americans ask"})
        page.wait_for_function("document.querySelector('#partial .stable').textContent === 'And so my fellow'")
        assert page.locator("#partial").count() == 1 and page.locator("#finals .final").count() == 0  # replaced in place

        server.send({"type": "final", "start": 0.48, "end": 7.66, "text": "And so my fellow Americans, ask not.", "language": "en",
                     "sentiment": {"label": "positive", "score": 0.912}})
        final = page.locator("#finals .final")
        final.wait_for()
        assert partial.is_hidden()
        assert final.locator(".text").inner_text() == "And so my fellow Americans, ask not."
        assert final.locator(".time").inner_text() == "0:00.5–0:07.7"
        assert final.locator(".badge").inner_text() == "positive 0.91"
        server.send({"type": "partial", "start": 8.0, "end": 9.0, "stable": "", "unstable": "what"})
        partial.wait_for(state="visible")
        server.send({"type": "partial", "start": 8.0, "end": 9.2, "stable": "", "unstable": ""})  # no text after all: cleared
        partial.wait_for(state="hidden")
        server.send({"type": "final", "start": 65.25, "end": 68.0, "text": "Bad news.", "language": "en", "sentiment": {"label": "negative", "score": 0.8}})
        page.wait_for_function("document.querySelectorAll('#finals .final').length === 2")
        assert page.locator("#finals .final").nth(1).locator(".time").inner_text() == "1:05.3–1:08.0"

        server.answer_finish = False
        page.get_by_role("button", name="Stop").click()
        wait_until(lambda: {"type": "finish"} in server.messages, 15, "the finish message", page)
        server.send({"type": "summary", "results": 2, "sentiment": {"positive": 1, "negative": 1, "neutral": 0, "unsupported": 0, "mean_score": 1.0}})
        server.send({"type": "finished"})
        page.wait_for_function("document.body.dataset.state === 'idle'")
        summary = page.locator("#summary")
        assert summary.is_visible()
        assert re.search(r"results\s+2", summary.inner_text()) and re.search(r"sentiment mean score\s+1\.000", summary.inner_text()), summary.inner_text()
        assert "2 lines" in page.locator("#status").inner_text()
        region = page.locator("[aria-live=polite]#finals").inner_text()
        assert "And so my fellow Americans, ask not." in region and "Bad news." in region
        assert page.locator("#error").is_hidden()
        assert page.get_by_role("button", name="Start").is_enabled()
    finally:
        browser.close()
    assert watch.page_errors == [] and watch.console_errors == []


def test_server_error_message_is_shown(playwright: Playwright, static_url: str) -> None:
    browser = launch(playwright, None)
    try:
        page = browser.new_page()
        watch = PageWatch(page)
        server = ScriptedServer(page)
        page.goto(static_url)
        page.get_by_role("button", name="Start").click()
        wait_until(lambda: server.frames != [], 15, "audio", page)
        server.send({"type": "error", "reason": "SERVER_TOO_BUSY"})
        assert server.route is not None
        server.route.close(code=1013, reason="SERVER_TOO_BUSY")
        error = page.get_by_role("alert")
        error.wait_for(state="visible")
        assert "SERVER_TOO_BUSY" in error.inner_text()
        page.wait_for_function("document.body.dataset.state === 'idle'")
        assert page.get_by_role("button", name="Start").is_enabled() and page.get_by_role("button", name="Stop").is_disabled()
    finally:
        browser.close()
    assert watch.page_errors == []


def test_failed_socket_is_shown(playwright: Playwright, static_url: str) -> None:
    """No WebSocket endpoint behind the page (the plain HTTP server refuses the upgrade)."""
    browser = launch(playwright, None)
    try:
        page = browser.new_page()
        watch = PageWatch(page)
        page.goto(static_url)
        page.get_by_role("button", name="Start").click()
        error = page.get_by_role("alert")
        error.wait_for(state="visible", timeout=15000)
        assert "Could not connect to the server" in error.inner_text()
        assert page.evaluate("document.body.dataset.state") == "idle"
    finally:
        browser.close()
    assert watch.page_errors == []


def test_refused_microphone_is_shown(playwright: Playwright, static_url: str) -> None:
    browser = launch(playwright, None, deny_microphone=True)
    try:
        page = browser.new_page()
        watch = PageWatch(page)
        server = ScriptedServer(page)
        page.goto(static_url)
        page.get_by_role("button", name="Start").click()
        error = page.get_by_role("alert")
        error.wait_for(state="visible", timeout=15000)
        assert "Microphone access was refused" in error.inner_text()
        assert page.evaluate("document.body.dataset.state") == "idle"
        assert server.urls == [], "the page connected without a microphone"
    finally:
        browser.close()
    assert watch.page_errors == []


# ---- the resampler on its own -------------------------------------------------------------------

_RESAMPLE = """([inRate, freq, seconds]) => {
  const r = new SincResampler(inRate, 16000);
  const n = Math.round(inRate * seconds);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 0.5 * Math.sin(2 * Math.PI * freq * i / inRate);
  const out = [];
  for (let i = 0; i < n; i += 128) out.push(...r.process(x.subarray(i, i + 128)));  // render quanta
  out.push(...r.flush());
  return out;
}"""


@pytest.mark.parametrize("in_rate", [48000, 44100, 22050, 8000, 47999])  # 47999: 16000 phases, quantized
def test_resampler_keeps_the_passband_and_removes_what_would_alias(playwright: Playwright, in_rate: int) -> None:
    browser = launch(playwright, None)
    try:
        page = browser.new_page()
        page.set_content("<!doctype html><title>resampler</title>")
        page.add_script_tag(path=str(STATIC / "pcm-worklet.js"))
        results = {freq: np.array(page.evaluate(_RESAMPLE, [in_rate, freq, 1.0])) for freq in (440, 1000, 2500, 9000, 11000)}
    finally:
        browser.close()
    for freq, out in results.items():
        assert abs(len(out) - 16000) <= 2, (freq, len(out))  # 1 s in, 1 s out
        steady = out[800:-800]
        rms = float(np.sqrt(np.mean(steady**2)))
        if freq <= 2500:  # the passband: level kept (0.5 / sqrt 2)
            assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01), (in_rate, freq, rms)
            reference = 0.5 * np.sin(2 * np.pi * freq * np.arange(len(out)) / 16000)  # time-aligned with the input
            assert np.max(np.abs(out - reference)[800:-800]) < 0.01, (in_rate, freq)
        elif freq < in_rate / 2:  # above 8 kHz: at least 70 dB down instead of folding back
            assert 20 * np.log10(rms / (0.5 / np.sqrt(2))) < -70, (in_rate, freq, rms)


# ---- the real server --------------------------------------------------------------------------


_RECORD_PARTIALS = """document.addEventListener("DOMContentLoaded", () => {
  window.partialsShown = [];
  const line = document.getElementById("partial");
  new MutationObserver(() => {
    if (!line.hidden && line.textContent.trim()) window.partialsShown.push(line.textContent);
  }).observe(line, { subtree: true, childList: true, characterData: true, attributes: true });
});"""


def test_page_captions_real_speech(playwright: Playwright, tmp_path: Path) -> None:
    """jfk.wav as the microphone, the real server: the sentence appears on the page."""
    config = tmp_path / "web.yaml"
    config.write_text(E2E_CONFIG.replace("channel: 1", "channel: 2"), encoding="utf-8")
    pcm = load_pcm16(DATA / JFK).astype(np.float32) / 32768.0
    microphone = np.concatenate([np.zeros(16000), pcm, np.zeros(24000)])  # 1 s lead-in: the page opens the mic first
    wav = write_wav(tmp_path / "jfk_mic.wav", soxr.resample(microphone, 16000, 48000), 48000)
    reference = (DATA / JFK).with_suffix(".txt").read_text(encoding="utf-8")
    with ServerProcess(config=config, log_path=tmp_path / "server.log") as server:
        port = server.http_port
        assert port, "no 'http listening on' line in the server log:\n" + server.log_text()[-3000:]
        browser = launch(playwright, wav)
        try:
            page = browser.new_page(viewport={"width": 860, "height": 600})
            watch = PageWatch(page)
            page.add_init_script(_RECORD_PARTIALS)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_label("Sentiment").check()
            page.get_by_role("button", name="Start").click()

            def finals_text() -> str:
                return " ".join(page.locator("#finals .final .text").all_inner_texts())

            wait_until(lambda: normalized_wer(reference, finals_text()) < 0.3, 90, "the spoken sentence", page)
            page.get_by_role("button", name="Stop").click()
            wait_until(lambda: page.evaluate("document.body.dataset.state") == "idle", 60, "the end of the session", page)
            region = page.locator("#finals")
            assert region.get_attribute("aria-live") == "polite"
            texts = page.locator("#finals .final .text").all_inner_texts()
            assert all(text in region.inner_text() for text in texts) and normalized_wer(reference, " ".join(texts)) < 0.3, texts
            assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
            assert page.locator("#finals .badge").count() >= 1  # sentiment on each final
            assert page.locator("#summary").is_visible()
            shown = page.evaluate("window.partialsShown")  # 2 workers: the server sends partials
            spoken = {w for w in re.findall(r"[a-z]+", reference.lower()) if len(w) >= 4}  # americans, country, ...
            assert any(spoken & set(re.findall(r"[a-z]+", partial.lower())) for partial in shown), shown
            if shot := os.environ.get("WS_PAGE_SCREENSHOT"):
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert watch.page_errors == [] and watch.console_errors == [], (watch.page_errors, watch.console_errors)
