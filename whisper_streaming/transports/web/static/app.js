// The live-caption page: microphone -> AudioWorklet (pcm-worklet.js: 16 kHz 16-bit PCM) ->
// binary frames on a WebSocket to /v1/stream -> captions.  Protocol (README, "WebSocket"):
//   page -> server: {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
//                    "partials": true, "sentiment": <checkbox>}, binary audio, {"type": "finish"}
//   server -> page: started, partial {start, end, stable, unstable}, final {start, end, text,
//                   language, sentiment?: {label, score}}, summary, finished, error {reason}
// A partial is one line replaced in place (the stable prefix plain, the unstable tail grey); the
// final of the utterance replaces it with a plain line and its start-end time.  Finals go to an
// aria-live region.  Nothing here comes from elsewhere: no framework, no CDN.
"use strict";

(() => {
  const TARGET_RATE = 16000; // what the page sends: the server's 16 kHz
  const FRAME_MS = 40; // one binary WebSocket frame: 640 samples, 1280 bytes
  const MAX_QUEUED_FRAMES = Math.round(30000 / FRAME_MS); // audio held while the socket opens: 30 s
  const MAX_BUFFERED_BYTES = 2 * 1024 * 1024; // unsent socket data (about a minute of audio): too slow
  const FINISH_TIMEOUT_MS = 120000; // Stop -> "finished"
  const SPACELESS = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/; // as pipeline/partials.py
  // Resolved against this script, so the page also works under a path prefix behind a proxy.
  const HERE = document.currentScript ? document.currentScript.src : document.baseURI;

  const $ = (id) => document.getElementById(id);
  const ui = {
    start: $("start"),
    stop: $("stop"),
    sentiment: $("sentiment"),
    level: $("level"),
    status: $("status"),
    error: $("error"),
    finals: $("finals"),
    partial: $("partial"),
    summary: $("summary"),
    summaryList: $("summary-list"),
  };

  const CLOSE_CODES = {
    1006: "the connection was lost",
    1008: "the server refused the connection (policy: token or origin)",
    1009: "a message was too big",
    1011: "the server had an internal error",
    1013: "the server is busy, try again later",
  };

  /** @type {null | object} the recording in progress (see start()) */
  let run = null;

  function setState(state, statusText) {
    document.body.dataset.state = state; // idle | starting | recording | finishing
    ui.start.disabled = state !== "idle";
    ui.stop.disabled = !(state === "starting" || state === "recording");
    ui.sentiment.disabled = state !== "idle";
    if (statusText !== undefined) ui.status.textContent = statusText;
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  function formatTime(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "?";
    const minutes = Math.floor(seconds / 60);
    return `${minutes}:${(seconds - 60 * minutes).toFixed(1).padStart(4, "0")}`;
  }

  function text(value) {
    return typeof value === "string" ? value : "";
  }

  function streamUrl() {
    const url = new URL("v1/stream", document.baseURI);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    const token = new URLSearchParams(location.search).get("token");
    if (token) url.searchParams.set("token", token);
    return url.href;
  }

  function microphoneMessage(err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      return "Microphone access was refused. Allow the microphone for this page (and serve it over HTTPS when it is not on localhost), then press Start again.";
    }
    if (name === "NotFoundError" || name === "OverconstrainedError") return "No microphone was found.";
    if (name === "NotReadableError") return "The microphone is in use by another program or could not be opened.";
    return `The microphone could not be opened: ${(err && err.message) || err}`;
  }

  // ---- captions -------------------------------------------------------------------------------

  function clearCaptions() {
    ui.finals.replaceChildren();
    hidePartial();
    ui.summaryList.replaceChildren();
    ui.summary.hidden = true;
  }

  function hidePartial() {
    ui.partial.hidden = true;
    for (const span of ui.partial.children) span.textContent = "";
  }

  function showPartial(msg) {
    const stable = text(msg.stable).trim();
    const unstable = text(msg.unstable).trim();
    if (!stable && !unstable) {
      hidePartial(); // the utterance ended with no text
      return;
    }
    const joiner = stable && unstable && !(SPACELESS.test(stable.slice(-1)) && SPACELESS.test(unstable[0])) ? " " : "";
    ui.partial.querySelector(".time").textContent = formatTime(msg.start);
    ui.partial.querySelector(".stable").textContent = stable;
    ui.partial.querySelector(".unstable").textContent = joiner + unstable;
    ui.partial.hidden = false;
    ui.partial.scrollIntoView({ block: "nearest" });
  }

  function addFinal(msg) {
    const line = document.createElement("p");
    line.className = "final";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${formatTime(msg.start)}–${formatTime(msg.end)}`;
    const words = document.createElement("span");
    words.className = "text";
    words.textContent = text(msg.text);
    line.append(time, words);
    const sentiment = msg.sentiment;
    if (sentiment && typeof sentiment === "object" && typeof sentiment.label === "string") {
      const badge = document.createElement("span");
      badge.className = `badge badge-${sentiment.label.replace(/[^a-z]/g, "")}`;
      const score = typeof sentiment.score === "number" ? ` ${sentiment.score.toFixed(2)}` : "";
      badge.textContent = sentiment.label + score;
      badge.title = "sentiment";
      line.append(badge);
    }
    ui.finals.append(line);
    hidePartial();
    line.scrollIntoView({ block: "nearest" });
  }

  function humanize(key) {
    return key.replace(/_/g, " ");
  }

  function summaryValue(value, name) {
    // JSON has no integer type: a score of exactly 1 arrives as 1 and is still shown as 1.000.
    if (typeof value === "number") return Number.isInteger(value) && !/score/.test(name) ? String(value) : value.toFixed(3);
    if (value === null) return "n/a";
    return String(value);
  }

  function addSummaryEntries(object, prefix) {
    for (const [key, value] of Object.entries(object)) {
      if (!prefix && key === "type") continue;
      const name = prefix ? `${prefix} ${humanize(key)}` : humanize(key);
      if (value && typeof value === "object" && !Array.isArray(value)) {
        addSummaryEntries(value, name);
      } else {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = Array.isArray(value) ? value.map((v) => summaryValue(v, name)).join(", ") : summaryValue(value, name);
        ui.summaryList.append(dt, dd);
      }
    }
  }

  function showSummary(msg) {
    ui.summaryList.replaceChildren();
    addSummaryEntries(msg, "");
    ui.summary.hidden = ui.summaryList.childElementCount === 0;
  }

  // ---- the recording --------------------------------------------------------------------------

  /** End the recording: release the microphone, the audio graph and the socket. */
  function teardown(current) {
    if (run === current) run = null;
    clearTimeout(current.finishTimer);
    if (current.stream) for (const track of current.stream.getTracks()) track.stop();
    if (current.source) current.source.disconnect();
    if (current.node) {
      current.node.port.onmessage = null;
      current.node.disconnect();
    }
    if (current.ctx && current.ctx.state !== "closed") current.ctx.close().catch(() => {});
    const ws = current.ws;
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) ws.close(1000, "done");
    ui.level.value = 0;
  }

  function fail(current, message) {
    if (run !== current) return; // already ended
    teardown(current);
    showError(message);
    setState("idle", "Stopped.");
  }

  function sendAudio(current, pcm) {
    const ws = current.ws;
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      fail(current, "The connection is too slow to carry live audio; the recording was stopped.");
      return;
    }
    ws.send(pcm);
  }

  /** Send the end of the stream once the server has started it and the worklet has flushed. */
  function maybeFinish(current) {
    if (!current.started || !current.flushed || current.finishSent) return;
    for (const pcm of current.queue.splice(0)) sendAudio(current, pcm);
    if (run !== current) return;
    current.ws.send(JSON.stringify({ type: "finish" }));
    current.finishSent = true;
  }

  function onWorkletMessage(current, msg) {
    if (run !== current || !msg) return;
    if (msg.type === "audio") {
      if (current.started && current.ws.readyState === WebSocket.OPEN) {
        sendAudio(current, msg.pcm);
      } else if (current.queue.push(msg.pcm) > MAX_QUEUED_FRAMES) {
        fail(current, "The server did not answer; the recording was stopped.");
      }
    } else if (msg.type === "level") {
      ui.level.value = Math.min(1, Math.sqrt(msg.rms) * 1.5);
    } else if (msg.type === "flushed") {
      current.flushed = true;
      maybeFinish(current);
    }
  }

  function onServerMessage(current, data) {
    if (run !== current || typeof data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      fail(current, "The server sent a message the page cannot read.");
      return;
    }
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "started":
        current.started = true;
        for (const pcm of current.queue.splice(0)) sendAudio(current, pcm);
        if (run === current && !current.stopping) setState("recording", `Listening (microphone at ${current.ctx.sampleRate} Hz, sent at ${TARGET_RATE} Hz). Speak now.`);
        maybeFinish(current);
        break;
      case "partial":
        showPartial(msg);
        break;
      case "final":
        current.finals += 1;
        addFinal(msg);
        break;
      case "summary":
        showSummary(msg);
        break;
      case "finished":
        teardown(current);
        setState("idle", `Done: ${current.finals} ${current.finals === 1 ? "line" : "lines"}.`);
        break;
      case "error":
        fail(current, `The server ended the session: ${text(msg.reason) || "unknown error"}.`);
        break;
      default:
        break; // a newer server's message: ignored
    }
  }

  function onSocketClosed(current, event) {
    if (run !== current) return; // ended on purpose
    let why = CLOSE_CODES[event.code] || `code ${event.code}`;
    if (event.reason) why += ` (${event.reason})`;
    fail(current, current.opened ? `The connection to the server closed: ${why}.` : `Could not connect to the server (${current.url}).`);
  }

  function openSocket(current) {
    current.url = streamUrl();
    let ws;
    try {
      ws = new WebSocket(current.url);
    } catch (err) {
      fail(current, `Could not connect to the server: ${err.message}`);
      return;
    }
    current.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      current.opened = true;
      ws.send(JSON.stringify({ type: "start", sample_rate: TARGET_RATE, encoding: "pcm_s16le", partials: true, sentiment: ui.sentiment.checked }));
    };
    ws.onmessage = (event) => onServerMessage(current, event.data);
    ws.onclose = (event) => onSocketClosed(current, event);
  }

  async function start() {
    if (run) return;
    clearError();
    clearCaptions();
    const current = { queue: [], finals: 0, started: false, flushed: false, finishSent: false, stopping: false, opened: false };
    run = current;
    setState("starting", "Waiting for the microphone…");
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail(current, "The browser gives the microphone only to secure pages: open this page over HTTPS (or on localhost).");
      return;
    }
    try {
      // Raw audio: the browser's noise suppression and gain control are tuned for calls, not for
      // Whisper, and the server normalizes the level itself.
      current.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      fail(current, microphoneMessage(err));
      return;
    }
    if (run !== current) {
      teardown(current); // stopped while the browser asked
      return;
    }
    try {
      current.ctx = new AudioContext(); // the device's native rate; the worklet resamples
      await current.ctx.audioWorklet.addModule(new URL("pcm-worklet.js", HERE).href);
      if (run !== current) {
        teardown(current);
        return;
      }
      current.node = new AudioWorkletNode(current.ctx, "pcm-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: "explicit", // the browser mixes the microphone down to mono
        channelInterpretation: "speakers",
        processorOptions: { targetRate: TARGET_RATE, frameMs: FRAME_MS },
      });
      current.node.port.onmessage = (event) => onWorkletMessage(current, event.data);
      current.source = current.ctx.createMediaStreamSource(current.stream);
      current.source.connect(current.node);
      current.node.connect(current.ctx.destination); // it outputs silence; connected, it is rendered
      await current.ctx.resume();
    } catch (err) {
      fail(current, `The audio capture could not start: ${(err && err.message) || err}`);
      return;
    }
    if (run !== current) return;
    ui.status.textContent = "Connecting to the server…";
    openSocket(current);
  }

  function stop() {
    const current = run;
    if (!current || current.stopping) return;
    current.stopping = true;
    if (!current.node) {
      teardown(current); // the microphone was not open yet
      setState("idle", "Stopped.");
      return;
    }
    setState("finishing", "Finishing the last words…");
    for (const track of current.stream.getTracks()) track.stop();
    current.node.port.postMessage({ type: "flush" });
    current.finishTimer = setTimeout(() => fail(current, "The server did not finish the transcript in time."), FINISH_TIMEOUT_MS);
  }

  ui.start.addEventListener("click", () => {
    start().catch((err) => {
      if (run) fail(run, `Something went wrong: ${(err && err.message) || err}`);
    });
  });
  ui.stop.addEventListener("click", stop);
  setState("idle");
})();
