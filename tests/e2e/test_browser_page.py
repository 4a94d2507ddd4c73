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
  microphone, a failed socket and an ``error`` message are shown; speakers: two registered
  (``enroll`` streams of the recorded audio on the same connection as the start that follows),
  finals labelled alice, bob and unknown as chat bubbles on their sides in their colours,
  ``ENROLL_TOO_SHORT`` and refused names shown, the kept voice samples sent again when the
  connection was lost, ``speakers: "auto"``;
* the real server (bundled model) on jfk.wav played as the microphone: the spoken sentence
  appears on the page, with no page errors.  ``WS_PAGE_SCREENSHOT=docs/page.png`` also saves a
  screenshot of that page (the README's); and a speaker registered from jfk.wav on the real
  server, sent again after the server's idle timeout closed the connection, labels the finals.

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
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Playwright, WebSocketRoute, sync_playwright

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
    ``finished`` for a finish unless told otherwise.  An ``enroll`` stream is answered at its
    finish with ``enrolled`` (``enroll_results[name]`` seconds of speech, default 4.21),
    ``summary`` and ``finished``, or, where ``enroll_results[name]`` is a reason, with that
    ``error`` and a close (the server's session ends)."""

    def __init__(self, page: Page, *, answer_finish: bool = True, enroll_results: dict[str, float | str] | None = None) -> None:
        self.messages: list[dict] = []
        self.frames: list[bytes] = []
        self.urls: list[str] = []
        self.stream_bytes: list[int] = []  # audio bytes of each start/enroll stream, in order
        self.route: WebSocketRoute | None = None
        self.answer_finish = answer_finish
        self.enroll_results = enroll_results or {}
        self._enrolling: str | None = None
        page.route_web_socket(STREAM_URL, self._connect)

    def _connect(self, ws: WebSocketRoute) -> None:
        self.route = ws
        self.urls.append(ws.url)
        ws.on_message(self._message)

    def _message(self, message: str | bytes) -> None:
        assert self.route is not None
        if isinstance(message, bytes):
            self.frames.append(message)
            if self.stream_bytes:
                self.stream_bytes[-1] += len(message)
            return
        msg = json.loads(message)
        self.messages.append(msg)
        if msg["type"] in ("start", "enroll"):
            self.stream_bytes.append(0)
            self._enrolling = msg["name"] if msg["type"] == "enroll" else None
            self.send({"type": "started", "options": {"sample_rate": msg.get("sample_rate"), "partials": True, "sentiment": bool(msg.get("sentiment"))}})
        elif msg["type"] == "finish" and self._enrolling is not None:
            name, self._enrolling = self._enrolling, None
            result = self.enroll_results.get(name, 4.21)
            if isinstance(result, str):
                self.send({"type": "error", "reason": result})
                self.route.close(code=1008, reason=result)
            else:
                self.send({"type": "final", "start": 0.2, "end": 1.0, "text": "My voice.", "language": "en"})  # the sample's own final
                self.send({"type": "enrolled", "name": name, "speech": result})
                self.send({"type": "summary", "results": 1})
                self.send({"type": "finished"})
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


# ---- speakers: registration and the chat view ---------------------------------------------------


def enroll_message(name: str) -> dict:
    return {"type": "enroll", "name": name, "sample_rate": 16000, "encoding": "pcm_s16le", "partials": False, "sentiment": False}


def register_speaker(page: Page, name: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Register speaker").click()


def status_text(page: Page) -> str:
    return page.locator("#status").inner_text()


def test_speakers_register_then_chat_bubbles(playwright: Playwright, static_url: str) -> None:
    """The seed's flow: register speaker 1, register speaker 2, start; finals labelled alice, bob
    and unknown render as bubbles on their sides in their colours, with the label and the time."""
    enroll_s = 2
    browser = launch(playwright, None)
    try:
        page = browser.new_page(viewport={"width": 860, "height": 700})
        watch = PageWatch(page)
        server = ScriptedServer(page, enroll_results={"alice": 4.21, "bob": 3.46})
        page.goto(static_url + f"?enroll_s={enroll_s}")
        assert page.get_by_label("Label speakers").input_value() == "enrolled"

        register_speaker(page, "alice")
        wait_until(lambda: "Recording alice: speak now" in status_text(page), 10, "the countdown", page)
        assert page.get_by_role("button", name="Start").is_disabled() and page.get_by_role("button", name="Register speaker").is_disabled()
        wait_until(lambda: "alice enrolled (4.2 s of speech)" in status_text(page), 20, "alice's confirmation", page)
        assert page.get_by_role("button", name="Register speaker").is_enabled() and page.get_by_label("Name", exact=True).input_value() == ""
        register_speaker(page, "bob")
        wait_until(lambda: "bob enrolled (3.5 s of speech)" in status_text(page), 20, "bob's confirmation", page)
        assert page.locator("#speaker-list li").all_inner_texts() == ["alice enrolled (4.2 s)", "bob enrolled (3.5 s)"]
        assert page.locator("#finals .final").count() == 0  # a voice sample's own finals are not captions

        assert server.messages == [enroll_message("alice"), {"type": "finish"}, enroll_message("bob"), {"type": "finish"}]
        for sample in server.stream_bytes:  # 16 kHz 16-bit: 32000 bytes a second
            assert 0.8 * enroll_s * 32000 <= sample <= 1.2 * enroll_s * 32000, server.stream_bytes

        page.get_by_role("button", name="Start").click()
        wait_until(lambda: len(server.stream_bytes) == 3 and server.stream_bytes[2] > 0, 15, "audio", page)
        assert len(server.urls) == 1, "the page opened a second connection: the enrolled voices would be lost"
        assert server.messages[4] == {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "partials": True, "sentiment": False}

        server.send({"type": "final", "start": 0.48, "end": 2.0, "text": "Hello Bob.", "language": "en", "speaker": "alice", "speaker_score": 0.81})
        server.send({"type": "final", "start": 2.5, "end": 4.04, "text": "Hi Alice.", "language": "en", "speaker": "bob", "speaker_score": 0.77})
        server.send({"type": "final", "start": 4.5, "end": 5.0, "text": "Hmm.", "language": "en", "speaker": "unknown", "speaker_score": 0.2})
        server.send({"type": "final", "start": 65.25, "end": 68.0, "text": "Bye.", "language": "en", "speaker": "alice", "speaker_score": 0.9})
        page.wait_for_function("document.querySelectorAll('#finals .final').length === 4")
        bubbles = page.locator("#finals .final.bubble")
        assert bubbles.count() == 4
        alice, bob, unknown, alice2 = (bubbles.nth(i) for i in range(4))
        assert [b.locator(".speaker").inner_text() for b in (alice, bob, unknown, alice2)] == ["alice", "bob", "unknown", "alice"]
        assert [b.locator(".time").inner_text() for b in (alice, bob, unknown, alice2)] == ["0:00.5–0:02.0", "0:02.5–0:04.0", "0:04.5–0:05.0", "1:05.3–1:08.0"]
        assert alice.locator(".text").inner_text() == "Hello Bob." and bob.locator(".text").inner_text() == "Hi Alice."

        def style(element: Locator, prop: str) -> str:
            return str(element.evaluate(f"e => getComputedStyle(e).{prop}"))

        def box(element: Locator) -> tuple[float, float]:
            """The element's left and right edges (px)."""
            b = element.bounding_box()
            assert b is not None
            return b["x"], b["x"] + b["width"]

        backgrounds = [style(b, "backgroundColor") for b in (alice, bob, unknown, alice2)]
        assert len(set(backgrounds[:3])) == 3 and backgrounds[3] == backgrounds[0], backgrounds  # one colour per label, stable
        labels = [style(b.locator(".speaker"), "color") for b in (alice, bob, unknown)]
        assert len(set(labels)) == 3, labels
        swatches = page.locator("#speaker-list .swatch")
        assert [style(swatches.nth(i), "backgroundColor") for i in (0, 1)] == labels[:2]  # the list's colours

        region_left, region_right = box(page.locator("#finals"))
        edges = [box(b) for b in (alice, bob, unknown, alice2)]
        left_gap = [left - region_left for left, _ in edges]
        right_gap = [region_right - right for _, right in edges]
        assert left_gap[0] < 5 and right_gap[0] > 50, (left_gap, right_gap)  # alice on the left
        assert right_gap[1] < 5 and left_gap[1] > 50, (left_gap, right_gap)  # bob on the right
        assert abs(left_gap[2] - right_gap[2]) < 5 and left_gap[2] > 50, (left_gap, right_gap)  # unknown in the middle
        assert left_gap[3] < 5  # alice again on her side
        assert page.locator("#finals").get_attribute("aria-live") == "polite"
        assert "Hello Bob." in page.locator("#finals").inner_text()

        page.get_by_role("button", name="Stop").click()
        page.wait_for_function("document.body.dataset.state === 'idle'")
        assert page.locator("#error").is_hidden()
        assert server.messages[-1] == {"type": "finish"} and len(server.urls) == 1
    finally:
        browser.close()
    assert watch.page_errors == [] and watch.console_errors == [], (watch.page_errors, watch.console_errors)


def test_speaker_registration_errors_and_voices_sent_again(playwright: Playwright, static_url: str) -> None:
    """A name the server would refuse is refused on the page; ENROLL_TOO_SHORT is shown (the
    server then closes the session, and its voices with it): Start reconnects and sends the kept
    sample of the registered speaker again before the start; ``auto`` asks for automatic labels."""
    browser = launch(playwright, None)
    try:
        page = browser.new_page()
        watch = PageWatch(page)
        server = ScriptedServer(page, enroll_results={"carol": "ENROLL_TOO_SHORT"})
        page.goto(static_url + "?enroll_s=1")
        error = page.get_by_role("alert")
        for bad, why in (("S1", "reserved for automatic labels"), ("Unknown", "reserved"), ("a b", "only letters"), (".x", "start with")):
            register_speaker(page, bad)
            error.wait_for(state="visible")
            assert why in error.inner_text(), (bad, error.inner_text())
        assert server.urls == [], "a refused name reached the server"

        register_speaker(page, "alice")
        wait_until(lambda: "alice enrolled" in status_text(page), 20, "alice's confirmation", page)
        assert error.is_hidden()
        register_speaker(page, "carol")
        error.wait_for(state="visible", timeout=20000)
        assert "carol was not registered" in error.inner_text() and "ENROLL_TOO_SHORT" in error.inner_text(), error.inner_text()
        page.wait_for_function("document.body.dataset.state === 'idle'")
        assert page.locator("#speaker-list li").all_inner_texts() == ["alice enrolled (4.2 s)"]
        assert page.get_by_role("button", name="Register speaker").is_enabled() and page.get_by_role("button", name="Start").is_enabled()
        register_speaker(page, "alice")  # registered already: refused on the page
        wait_until(lambda: "alice is registered already" in error.inner_text(), 5, "the duplicate name", page)

        page.get_by_role("button", name="Start").click()
        wait_until(lambda: any(m["type"] == "start" for m in server.messages), 20, "the start", page)
        assert len(server.urls) == 2
        first_alice = server.stream_bytes[0]
        assert server.messages[4:] == [enroll_message("alice"), {"type": "finish"}, {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "partials": True, "sentiment": False}]
        assert server.stream_bytes[2] == first_alice > 0  # the same sample sent again
        assert error.is_hidden()
        page.get_by_role("button", name="Stop").click()
        page.wait_for_function("document.body.dataset.state === 'idle'")

        page.get_by_label("Label speakers").select_option("auto")
        page.get_by_role("button", name="Start").click()
        wait_until(lambda: sum(m["type"] == "start" for m in server.messages) == 2, 20, "the second start", page)
        assert server.messages[-1]["speakers"] == "auto" and len(server.urls) == 2  # the same connection, no enrolment again
        server.send({"type": "final", "start": 1.0, "end": 2.0, "text": "Auto.", "language": "en", "speaker": "S1", "speaker_score": 0.9})
        server.send({"type": "final", "start": 3.0, "end": 4.0, "text": "Plain.", "language": "en"})
        page.wait_for_function("document.querySelectorAll('#finals .final').length === 2")
        assert page.locator("#finals .final.bubble .speaker").all_inner_texts() == ["S1"]
        plain = page.locator("#finals .final").nth(1)
        assert "bubble" not in (plain.get_attribute("class") or "") and plain.locator(".text").inner_text() == "Plain."
        page.get_by_role("button", name="Stop").click()
        page.wait_for_function("document.body.dataset.state === 'idle'")
    finally:
        browser.close()
    assert watch.page_errors == [] and watch.console_errors == [], (watch.page_errors, watch.console_errors)


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



def test_page_registers_a_speaker_on_the_real_server(playwright: Playwright, tmp_path: Path) -> None:
    """jfk.wav as the microphone (Chromium plays it from the start for each capture), the real
    server: the page registers "jfk" from the 8 s it records; then it waits past the server's idle
    timeout (4 s in this config), so the server closes the connection and the voice with it, and
    Start sends the kept sample again on a new connection: the finals are bubbles labelled jfk."""
    config = tmp_path / "web.yaml"
    config.write_text(E2E_CONFIG.replace("channel: 1", "channel: 2"), encoding="utf-8")
    pcm = load_pcm16(DATA / JFK).astype(np.float32) / 32768.0
    microphone = np.concatenate([np.zeros(16000), pcm, np.zeros(24000)])
    wav = write_wav(tmp_path / "jfk_mic.wav", soxr.resample(microphone, 16000, 48000), 48000)
    reference = (DATA / JFK).with_suffix(".txt").read_text(encoding="utf-8")
    with ServerProcess(config=config, log_path=tmp_path / "server.log") as server:
        port = server.http_port
        assert port, "no 'http listening on' line in the server log:\n" + server.log_text()[-3000:]
        browser = launch(playwright, wav)
        try:
            page = browser.new_page(viewport={"width": 860, "height": 700})
            watch = PageWatch(page)
            page.goto(f"http://127.0.0.1:{port}/?enroll_s=8")
            register_speaker(page, "jfk")
            wait_until(lambda: "jfk enrolled" in status_text(page) or page.locator("#error").is_visible(), 90, "the enrolment", page)
            assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
            speech_s = float(re.search(r"jfk enrolled \(([0-9.]+) s of speech\)", status_text(page)).group(1))  # type: ignore[union-attr]
            assert speech_s >= 3.0, status_text(page)
            wait_until(lambda: "idle for" in server.log_text(), 30, "the server's idle timeout", page)
            page.get_by_role("button", name="Start").click()

            def texts() -> list[str]:
                return page.locator("#finals .final .text").all_inner_texts()

            wait_until(lambda: normalized_wer(reference, " ".join(texts())) < 0.3, 120, "the spoken sentence", page)
            page.get_by_role("button", name="Stop").click()
            wait_until(lambda: page.evaluate("document.body.dataset.state") == "idle", 60, "the end of the session", page)
            finals = page.locator("#finals .final")
            assert finals.count() >= 2
            assert page.locator("#finals .final.bubble .speaker").all_inner_texts() == ["jfk"] * finals.count(), page.locator("#finals").inner_text()
            assert all("side-left" in (f.get_attribute("class") or "") for f in finals.all())
            assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
        finally:
            browser.close()
        log = server.log_text()
    assert log.count("speaker 'jfk' enrolled") == 2, log[-3000:]  # registered, then sent again on the new connection
    assert watch.page_errors == [] and watch.console_errors == [], (watch.page_errors, watch.console_errors)
