// The live-caption page: microphone -> AudioWorklet (pcm-worklet.js: 16 kHz 16-bit PCM) ->
// binary frames on a WebSocket to /v1/stream -> captions.  Protocol (README, "WebSocket"):
//   page -> server: {"type": "enroll", "name": "alice", "sample_rate": 16000, "encoding": "pcm_s16le",
//                    "partials": false, "sentiment": false}, binary audio (a recorded voice sample),
//                   {"type": "finish"};
//                   {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "partials": true,
//                    "sentiment": <checkbox>, "speakers"?: "auto" | "off"}, binary audio, {"type": "finish"}
//   server -> page: started, partial {start, end, stable, unstable}, final {start, end, text,
//                   language, sentiment?: {label, score}, speaker?: "alice" | "unknown" | "S1",
//                   speaker_score?}, enrolled {name, speech}, summary, finished, error {reason}
// Speakers (the flow of ../shared/seeds/speaker_diarization_stt.md): "Register speaker" records a
// voice sample of ENROLL_S seconds with a countdown and sends it as an enroll stream; then Start.
// Finals with a speaker render as chat bubbles, one side and one colour per label (kept for the
// page's life), `unknown` grey in the middle; finals without one as plain caption lines.
// A partial is one line replaced in place (the stable prefix plain, the unstable tail grey); the
// final of the utterance replaces it.  Finals go to an aria-live region.  Nothing here comes from
// elsewhere: no framework, no CDN.
"use strict";

(() => {
  const TARGET_RATE = 16000; // what the page sends: the server's 16 kHz
  const FRAME_MS = 40; // one binary WebSocket frame: 640 samples, 1280 bytes
  const MAX_QUEUED_FRAMES = Math.round(30000 / FRAME_MS); // audio held while the socket opens: 30 s
  const MAX_BUFFERED_BYTES = 2 * 1024 * 1024; // unsent socket data (about a minute of audio): too slow
  const FINISH_TIMEOUT_MS = 120000; // Stop -> "finished"
  const ENROLL_TIMEOUT_MS = 60000; // a voice sample sent -> "finished"
  // A voice sample's length: the server wants 3 s of speech (config speakers.min_enroll_speech_s),
  // 5 s of recording leaves room for pauses.  ?enroll_s=N (1-30) records N seconds instead.
  const ENROLL_S = (() => {
    const asked = Number(new URLSearchParams(location.search).get("enroll_s"));
    return Number.isFinite(asked) && asked >= 1 && asked <= 30 ? asked : 5;
  })();
  const SPEAKER_COLOURS = 8; // .speaker-0 ... .speaker-7 in style.css
  const UNKNOWN_SPEAKER = "unknown";
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
    speakerName: $("speaker-name"),
    register: $("register"),
    speakerMode: $("speaker-mode"),
    speakerList: $("speaker-list"),
  };

  const CLOSE_CODES = {
    1006: "the connection was lost",
    1008: "the server refused the connection (policy: token or origin)",
    1009: "a message was too big",
    1011: "the server had an internal error",
    1013: "the server is busy, try again later",
  };

  const ENROLL_ERRORS = {
    ENROLL_TOO_SHORT: "too little speech in the sample; speak during the whole countdown and register again",
    DUPLICATE_SPEAKER: "that name is registered already",
    BAD_SPEAKER_NAME: "the server does not accept that name",
  };

  /** @type {null | object} the recording in progress (see start()) */
  let run = null;
  /** @type {null | object} the voice sample being recorded or sent (see register()) */
  let enrolling = null;
  /** @type {{name: string, frames: ArrayBuffer[], speechS: number}[]} the registered speakers, in order */
  const speakers = [];
  /** label -> its order of first appearance (its colour and side), for the page's life */
  const labelOrder = new Map();

  /**
   * The page's one WebSocket (null: none open).  Enrolled voices live in the server's session,
   * i.e. in this connection, so enrolment and the recordings after it share it: it stays open
   * between streams (a "finished" does not close it).  It may close anyway: the server's idle
   * timeout (config network.socket_timeout, 60 s by default, ends a session that sends nothing)
   * or an error (which ends the session with its voices).  The page keeps each registered
   * speaker's voice sample, so the next stream that needs the voices opens a new connection and
   * first sends the kept samples again as enroll streams (see session()): the speakers survive
   * a closed connection at the cost of a few seconds of server time.
   * @type {null | {ws: WebSocket, url: string, opened: boolean, closed: boolean,
   *                enrolled: Set<string>, handler: null | function, onLost: null | function}}
   */
  let conn = null;

  /** A failure whose message is for the user as it is. */
  class PageError extends Error {}

  /** An ``error`` message from the server: ``reason`` is its reason code. */
  class ServerError extends Error {
    constructor(reason) {
      super(`The server ended the session: ${reason}.`);
      this.reason = reason;
    }
  }

  function setState(state, statusText) {
    document.body.dataset.state = state; // idle | enrolling | starting | recording | finishing
    const idle = state === "idle";
    ui.start.disabled = !idle;
    ui.stop.disabled = !(state === "starting" || state === "recording");
    ui.sentiment.disabled = !idle;
    ui.register.disabled = !idle;
    ui.speakerName.disabled = !idle;
    ui.speakerMode.disabled = !idle;
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

  function errorText(err) {
    return err instanceof PageError || err instanceof ServerError ? err.message : `Something went wrong: ${(err && err.message) || err}`;
  }

  // ---- the connection ---------------------------------------------------------------------------

  function closeDescription(event) {
    let why = CLOSE_CODES[event.code] || `code ${event.code}`;
    if (event.reason) why += ` (${event.reason})`;
    return why;
  }

  /** The open connection, or a new one once it is open. Rejects with a PageError. */
  function connect() {
    if (conn && !conn.closed && conn.ws.readyState === WebSocket.OPEN) return Promise.resolve(conn);
    if (conn) closeConnection(conn);
    const c = { url: streamUrl(), opened: false, closed: false, enrolled: new Set(), handler: null, onLost: null };
    conn = c;
    return new Promise((resolve, reject) => {
      try {
        c.ws = new WebSocket(c.url);
      } catch (err) {
        c.closed = true;
        conn = null;
        reject(new PageError(`Could not connect to the server: ${err.message}`));
        return;
      }
      c.ws.binaryType = "arraybuffer";
      c.ws.onopen = () => {
        c.opened = true;
        resolve(c);
      };
      c.ws.onmessage = (event) => onSocketMessage(c, event.data);
      c.ws.onclose = (event) => {
        const lost = c.onLost;
        c.closed = true;
        c.handler = c.onLost = null;
        if (conn === c) conn = null;
        if (!c.opened) reject(new PageError(`Could not connect to the server (${c.url}).`));
        else if (lost) lost(closeDescription(event)); // else: closed between streams (idle timeout): nothing lost but the session
      };
    });
  }

  function closeConnection(c) {
    c.closed = true;
    c.handler = c.onLost = null;
    if (conn === c) conn = null;
    const ws = c.ws;
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) ws.close(1000, "done");
  }

  /** A text frame to the stream that owns the connection now (null: not readable JSON). */
  function onSocketMessage(c, data) {
    if (typeof data !== "string" || !c.handler) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      msg = null;
    }
    if (msg !== null && typeof msg !== "object") return;
    c.handler(msg);
  }

  /**
   * One enroll stream on ``c``: ``frames`` (16 kHz PCM) as the voice sample of ``name``.
   * Resolves to the ``enrolled`` message; rejects with a ServerError (``ENROLL_TOO_SHORT`` ...,
   * the server then closes the connection) or a PageError, closing the connection.
   */
  function sendVoiceSample(c, name, frames) {
    return new Promise((resolve, reject) => {
      let enrolled = null;
      let timer = null;
      const done = (err, value) => {
        clearTimeout(timer);
        c.handler = c.onLost = null;
        if (err) {
          closeConnection(c);
          reject(err);
        } else {
          resolve(value);
        }
      };
      timer = setTimeout(() => done(new PageError("The server did not answer in time.")), ENROLL_TIMEOUT_MS);
      c.handler = (msg) => {
        if (msg === null) {
          done(new PageError("The server sent a message the page cannot read."));
          return;
        }
        switch (msg.type) {
          case "started":
            for (const pcm of frames) c.ws.send(pcm);
            c.ws.send(JSON.stringify({ type: "finish" }));
            break;
          case "enrolled":
            enrolled = msg;
            break;
          case "finished":
            if (enrolled) {
              c.enrolled.add(name);
              done(null, enrolled);
            } else {
              done(new PageError("The server did not register the voice: speaker labels are off on this server (config speakers.enabled)."));
            }
            break;
          case "error":
            done(new ServerError(text(msg.reason) || "unknown error"));
            break;
          default:
            break; // the sample's own finals and summary: not shown
        }
      };
      c.onLost = (why) => done(new PageError(`The connection to the server closed: ${why}.`));
      c.ws.send(JSON.stringify({ type: "enroll", name, sample_rate: TARGET_RATE, encoding: "pcm_s16le", partials: false, sentiment: false }));
    });
  }

  /** The connection for the next stream; with ``withVoices``, every registered speaker enrolled on it. */
  async function session(withVoices) {
    const c = await connect();
    if (withVoices) {
      for (const speaker of speakers) {
        if (c.enrolled.has(speaker.name)) continue;
        ui.status.textContent = `Sending ${speaker.name}'s voice sample again (new connection)…`;
        await sendVoiceSample(c, speaker.name, speaker.frames);
      }
    }
    return c;
  }

  // ---- the microphone ---------------------------------------------------------------------------

  /**
   * Open the microphone on ``cap`` (sets stream, ctx, node, source) with ``onMessage`` receiving
   * the worklet's messages.  Rejects with a PageError.  Call closeMicrophone(cap) in every case.
   */
  async function openMicrophone(cap, onMessage) {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new PageError("The browser gives the microphone only to secure pages: open this page over HTTPS (or on localhost).");
    }
    try {
      // Raw audio: the browser's noise suppression and gain control are tuned for calls, not for
      // Whisper, and the server normalizes the level itself.
      cap.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      throw new PageError(microphoneMessage(err));
    }
    if (cap.closed) return closeMicrophone(cap); // stopped while the browser asked
    try {
      cap.ctx = new AudioContext(); // the device's native rate; the worklet resamples
      await cap.ctx.audioWorklet.addModule(new URL("pcm-worklet.js", HERE).href);
      if (cap.closed) return closeMicrophone(cap);
      cap.node = new AudioWorkletNode(cap.ctx, "pcm-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: "explicit", // the browser mixes the microphone down to mono
        channelInterpretation: "speakers",
        processorOptions: { targetRate: TARGET_RATE, frameMs: FRAME_MS },
      });
      cap.node.port.onmessage = (event) => onMessage(event.data);
      cap.source = cap.ctx.createMediaStreamSource(cap.stream);
      cap.source.connect(cap.node);
      cap.node.connect(cap.ctx.destination); // it outputs silence; connected, it is rendered
      await cap.ctx.resume();
    } catch (err) {
      throw new PageError(`The audio capture could not start: ${(err && err.message) || err}`);
    }
    return undefined;
  }

  /** Release the microphone and the audio graph of ``cap`` (again: nothing). */
  function closeMicrophone(cap) {
    cap.closed = true;
    if (cap.stream) for (const track of cap.stream.getTracks()) track.stop();
    if (cap.source) cap.source.disconnect();
    if (cap.node) {
      cap.node.port.onmessage = null;
      cap.node.disconnect();
    }
    if (cap.ctx && cap.ctx.state !== "closed") cap.ctx.close().catch(() => {});
    ui.level.value = 0;
  }

  function showLevel(rms) {
    ui.level.value = Math.min(1, Math.sqrt(rms) * 1.5);
  }

  // ---- speakers ---------------------------------------------------------------------------------

  /** Why ``name`` is not a speaker name (the server's rule, core/speakers.py), or "". */
  function nameProblem(name) {
    if (!name) return "Type the speaker's name first.";
    if ([...name].length > 32) return "A speaker name is at most 32 characters.";
    if (!/^[\p{L}\p{N}\p{M}_.-]+$/u.test(name)) return "A speaker name may hold only letters, digits, '_', '-' and '.'.";
    if (name.startsWith(".")) return "A speaker name must not start with '.'.";
    if (name.toLowerCase() === UNKNOWN_SPEAKER) return `"${UNKNOWN_SPEAKER}" is reserved for voices that match no speaker.`;
    if (/^[Ss][0-9]+$/.test(name)) return "Names like S1, S2 are reserved for automatic labels.";
    if (speakers.some((s) => s.name === name)) return `${name} is registered already.`;
    return "";
  }

  /** The CSS classes of ``label``: its colour and its side (by order of first appearance). */
  function labelClasses(label) {
    if (label === UNKNOWN_SPEAKER) return ["speaker-unknown", "side-neutral"];
    if (!labelOrder.has(label)) labelOrder.set(label, labelOrder.size);
    const order = labelOrder.get(label);
    return [`speaker-${order % SPEAKER_COLOURS}`, order % 2 === 0 ? "side-left" : "side-right"];
  }

  function renderSpeakers() {
    const items = speakers.map((speaker) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch ${labelClasses(speaker.name)[0]}`;
      swatch.setAttribute("aria-hidden", "true");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = speaker.name;
      const speech = document.createElement("span");
      speech.className = "speech";
      speech.textContent = ` enrolled (${speaker.speechS.toFixed(1)} s)`;
      item.append(swatch, name, speech);
      return item;
    });
    ui.speakerList.replaceChildren(...items);
    ui.speakerList.hidden = items.length === 0;
  }

  /** Record ``ENROLL_S`` seconds on ``rec`` with a countdown; resolves to the 16 kHz PCM frames. */
  async function recordVoice(rec, name) {
    let flushed;
    const allFlushed = new Promise((resolve) => {
      flushed = resolve;
    });
    rec.frames = [];
    ui.status.textContent = `Opening the microphone to record ${name}…`;
    await openMicrophone(rec, (msg) => {
      if (!msg) return;
      if (msg.type === "audio") rec.frames.push(msg.pcm);
      else if (msg.type === "level") showLevel(msg.rms);
      else if (msg.type === "flushed") flushed();
    });
    const endMs = performance.now() + ENROLL_S * 1000;
    await new Promise((resolve) => {
      const tick = () => {
        const leftMs = endMs - performance.now();
        if (leftMs <= 0) {
          resolve();
          return;
        }
        ui.status.textContent = `Recording ${name}: speak now… ${Math.ceil(leftMs / 1000)} s`;
        rec.timer = setTimeout(tick, Math.min(250, leftMs));
      };
      tick();
    });
    for (const track of rec.stream.getTracks()) track.stop();
    rec.node.port.postMessage({ type: "flush" });
    await Promise.race([allFlushed, new Promise((resolve) => setTimeout(resolve, 2000))]);
    closeMicrophone(rec);
    return rec.frames;
  }

  async function register() {
    if (run || enrolling) return;
    const name = ui.speakerName.value.trim().normalize("NFC");
    const problem = nameProblem(name);
    if (problem) {
      showError(problem);
      ui.speakerName.focus();
      return;
    }
    clearError();
    const rec = { closed: false };
    enrolling = rec;
    setState("enrolling");
    try {
      const frames = await recordVoice(rec, name);
      ui.status.textContent = `Registering ${name}…`;
      const c = await session(false);
      const answer = await sendVoiceSample(c, name, frames);
      const speechS = typeof answer.speech === "number" ? answer.speech : ENROLL_S;
      speakers.push({ name, frames, speechS });
      renderSpeakers();
      ui.speakerName.value = "";
      setState("idle", `${name} enrolled (${speechS.toFixed(1)} s of speech).${speakers.length === 1 ? " Register the next speaker, or press Start." : " Press Start when everyone is registered."}`);
    } catch (err) {
      const reason = err instanceof ServerError ? ENROLL_ERRORS[err.reason] : undefined;
      showError(reason ? `${name} was not registered: ${reason} (${err.reason}).` : `${name} was not registered. ${errorText(err)}`);
      setState("idle", `${name} was not registered.`);
    } finally {
      clearTimeout(rec.timer);
      closeMicrophone(rec);
      enrolling = null;
    }
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

  /** A final: a chat bubble when it carries a speaker (label, time, text), else a caption line. */
  function addFinal(msg) {
    const line = document.createElement("div");
    line.className = "final";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${formatTime(msg.start)}–${formatTime(msg.end)}`;
    const words = document.createElement("span");
    words.className = "text";
    words.textContent = text(msg.text);
    const label = text(msg.speaker);
    if (label) {
      line.classList.add("bubble", ...labelClasses(label));
      const who = document.createElement("span");
      who.className = "speaker";
      who.textContent = label;
      if (typeof msg.speaker_score === "number") who.title = `voice similarity ${msg.speaker_score.toFixed(2)}`;
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.append(who, time);
      line.append(meta, words);
    } else {
      line.append(time, words);
    }
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

  /** End the recording: release the microphone and the audio graph; the connection stays open
   *  for the next stream (its enrolled voices) unless ``keepConnection`` is false. */
  function teardown(current, keepConnection) {
    if (run === current) run = null;
    clearTimeout(current.finishTimer);
    closeMicrophone(current);
    const c = current.conn;
    if (!c) return;
    if (keepConnection) c.handler = c.onLost = null;
    else closeConnection(c); // mid-stream: the protocol has no way to abandon a stream but the close
  }

  function fail(current, message) {
    if (run !== current) return; // already ended
    teardown(current, false);
    showError(message);
    setState("idle", "Stopped.");
  }

  function sendAudio(current, pcm) {
    const ws = current.conn.ws;
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
    current.conn.ws.send(JSON.stringify({ type: "finish" }));
    current.finishSent = true;
  }

  function onWorkletMessage(current, msg) {
    if (run !== current || !msg) return;
    if (msg.type === "audio") {
      if (current.started && current.conn.ws.readyState === WebSocket.OPEN) {
        sendAudio(current, msg.pcm);
      } else if (current.queue.push(msg.pcm) > MAX_QUEUED_FRAMES) {
        fail(current, "The server did not answer; the recording was stopped.");
      }
    } else if (msg.type === "level") {
      showLevel(msg.rms);
    } else if (msg.type === "flushed") {
      current.flushed = true;
      maybeFinish(current);
    }
  }

  function onServerMessage(current, msg) {
    if (run !== current) return;
    if (msg === null) {
      fail(current, "The server sent a message the page cannot read.");
      return;
    }
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
        teardown(current, true);
        setState("idle", `Done: ${current.finals} ${current.finals === 1 ? "line" : "lines"}.`);
        break;
      case "error":
        fail(current, new ServerError(text(msg.reason) || "unknown error").message);
        break;
      default:
        break; // a newer server's message: ignored
    }
  }

  async function start() {
    if (run || enrolling) return;
    clearError();
    clearCaptions();
    const mode = ui.speakerMode.value; // enrolled | auto | off
    const current = { queue: [], finals: 0, started: false, flushed: false, finishSent: false, stopping: false, closed: false, conn: null };
    run = current;
    setState("starting", "Waiting for the microphone…");
    try {
      await openMicrophone(current, (msg) => onWorkletMessage(current, msg));
    } catch (err) {
      fail(current, errorText(err));
      return;
    }
    if (run !== current) return; // stopped while the browser asked
    ui.status.textContent = "Connecting to the server…";
    let c;
    try {
      c = await session(mode === "enrolled");
    } catch (err) {
      const reason = err instanceof ServerError ? ENROLL_ERRORS[err.reason] : undefined;
      fail(current, reason ? `A registered voice could not be sent again: ${reason} (${err.reason}).` : errorText(err));
      return;
    }
    if (run !== current) return; // ended meanwhile (the connection stays open for the next stream)
    current.conn = c;
    c.handler = (msg) => onServerMessage(current, msg);
    c.onLost = (why) => fail(current, `The connection to the server closed: ${why}.`);
    if (!current.stopping) ui.status.textContent = "Starting…";
    const begin = { type: "start", sample_rate: TARGET_RATE, encoding: "pcm_s16le", partials: true, sentiment: ui.sentiment.checked };
    if (mode === "auto" || mode === "off") begin.speakers = mode; // absent: the names enrolled on this connection
    c.ws.send(JSON.stringify(begin));
  }

  function stop() {
    const current = run;
    if (!current || current.stopping) return;
    current.stopping = true;
    if (!current.node) {
      teardown(current, true); // the microphone was not open yet
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
      if (run) fail(run, errorText(err));
    });
  });
  ui.stop.addEventListener("click", stop);
  ui.register.addEventListener("click", () => {
    register().catch((err) => showError(errorText(err)));
  });
  ui.speakerName.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      ui.register.click();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") stop(); // as the seed's page: Esc stops the recording
  });
  renderSpeakers();
  setState("idle");
})();
