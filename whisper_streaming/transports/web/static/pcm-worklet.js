// The live-caption page's capture processor (AudioWorklet): microphone samples at the device's
// native rate in, 16-bit little-endian PCM at 16 kHz out, in frames of `frameMs` (default 40 ms)
// posted to the page, which sends each as one binary WebSocket frame to /v1/stream.
//
// The resampler is band-limited interpolation with a Kaiser-windowed sinc low-pass, after
// Julius O. Smith III, "Digital Audio Resampling Home Page" (CCRMA, Stanford):
// https://ccrma.stanford.edu/~jos/resample/ , and the Kaiser window of J. F. Kaiser,
// "Nonrecursive digital filter design using the I0-sinh window function" (1974), as given in
// Oppenheim & Schafer, "Discrete-Time Signal Processing", section 7.5.3.  For a rational ratio
// up/down (48000 -> 16000 is 1/3, 44100 -> 16000 is 160/441) it is an exact polyphase filter: one
// row of 2K coefficients per output phase, built on first use.  The cutoff sits at `rolloff` of
// the lower Nyquist frequency (7.36 kHz for 16 kHz out), so nothing above 8 kHz folds back into
// the speech band (sample dropping would alias it at full strength; averaging blocks of 3 samples
// lets a 9 kHz tone through at -5 dB, this filter at about -85 dB).
//
// This file runs in two places: as the AudioWorklet module (registerProcessor exists there) and,
// for the browser test, as a plain script in the page (then it only defines SincResampler).
"use strict";

/** Greatest common divisor of two non-negative integers. */
function gcd(a, b) {
  while (b) {
    [a, b] = [b, a % b];
  }
  return a;
}

/** The modified Bessel function of the first kind, order 0 (power series; |x| < 30 is plenty). */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  const half = x / 2;
  for (let k = 1; k < 64; k++) {
    term *= (half / k) * (half / k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

/**
 * Streaming sample-rate converter: Kaiser-windowed sinc, polyphase.
 *
 * `process(Float32Array)` takes the next input samples (any count) and returns the output
 * samples that are complete (a Float32Array; the filter's look-ahead, `taps` input samples,
 * about 1.5 ms at 48 kHz, is held back); `flush()` returns the rest at the end of the stream.
 * Output sample n is the band-limited input at time n * inputRate / outputRate (input samples),
 * so output 0 lines up with input 0.  Each phase's coefficients sum to 1 (unit gain at DC).
 *
 * Options: `zeroCrossings` of the sinc on each side (filter length), `rolloff` (cutoff as a
 * fraction of the lower Nyquist frequency), `kaiserBeta` (stopband depth: 8.6 is about -86 dB),
 * `maxPhases` (a ratio with more phases than this, an odd device rate, quantizes the phase to
 * 1/maxPhases of a sample instead).  Throws RangeError for a rate that is not positive.
 */
class SincResampler {
  constructor(inputRate, outputRate, { zeroCrossings = 24, rolloff = 0.92, kaiserBeta = 8.6, maxPhases = 4096 } = {}) {
    const inRate = Math.round(inputRate);
    const outRate = Math.round(outputRate);
    if (!(inRate > 0 && outRate > 0)) throw new RangeError(`bad sample rates ${inputRate} -> ${outputRate}`);
    const g = gcd(inRate, outRate);
    this.inputRate = inRate;
    this.outputRate = outRate;
    this.up = outRate / g; // L: output phases per input sample
    this.down = inRate / g; // M: input advance per output sample, in units of 1/L
    this.cutoff = rolloff * Math.min(1, outRate / inRate); // of the input Nyquist frequency
    this.halfWidth = zeroCrossings / this.cutoff; // input samples on each side
    this.taps = Math.ceil(this.halfWidth); // K: the row covers input samples pos-K+1 .. pos+K
    this.phases = Math.min(this.up, maxPhases);
    this.exact = this.up <= maxPhases;
    this.beta = kaiserBeta;
    this.i0Beta = besselI0(kaiserBeta);
    this.rows = new Array(this.phases + 1);
    // History with K-1 zeros before the first input sample; buf[0] is input sample `start`.
    this.buf = new Float32Array(Math.max(4096, 4 * this.taps));
    this.len = this.taps - 1;
    this.start = -(this.taps - 1);
    this.pos = 0; // the next output is at input time pos + phase / up
    this.phase = 0;
  }

  /** The windowed sinc at `d` input samples from the output instant. */
  kernel(d) {
    const x = d / this.halfWidth;
    if (x <= -1 || x >= 1) return 0;
    const window = besselI0(this.beta * Math.sqrt(1 - x * x)) / this.i0Beta;
    const arg = Math.PI * this.cutoff * d;
    const sinc = arg === 0 ? 1 : Math.sin(arg) / arg;
    return this.cutoff * sinc * window;
  }

  /** The 2K coefficients for fractional time q / phases, normalized to unit DC gain. */
  row(q) {
    let row = this.rows[q];
    if (row === undefined) {
      const k = this.taps;
      const frac = q / this.phases;
      row = new Float32Array(2 * k);
      let sum = 0;
      for (let j = 0; j < 2 * k; j++) {
        row[j] = this.kernel(frac + k - 1 - j); // input sample pos-K+1+j is this far before the instant
        sum += row[j];
      }
      for (let j = 0; j < 2 * k; j++) row[j] /= sum;
      this.rows[q] = row;
    }
    return row;
  }

  process(input) {
    this.append(input);
    const k = this.taps;
    const last = this.start + this.len - 1; // the newest input sample's index
    const available = last - k - this.pos + 1; // input samples whose outputs are complete
    const out = new Float32Array(Math.max(0, Math.ceil((available * this.up) / this.down) + 1));
    let n = 0;
    while (this.pos + k <= last && n < out.length) {
      const row = this.row(this.exact ? this.phase : Math.round((this.phase * this.phases) / this.up));
      const base = this.pos - k + 1 - this.start;
      let acc = 0;
      for (let j = 0; j < row.length; j++) acc += row[j] * this.buf[base + j];
      out[n++] = acc;
      this.phase += this.down;
      this.pos += Math.floor(this.phase / this.up);
      this.phase %= this.up;
    }
    const drop = this.pos - k + 1 - this.start; // history no later output needs
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      this.start += drop;
    }
    return out.subarray(0, n);
  }

  /** The outputs up to the last input sample (the look-ahead filled with silence). */
  flush() {
    return this.process(new Float32Array(this.taps));
  }

  append(input) {
    if (this.len + input.length > this.buf.length) {
      const bigger = new Float32Array(2 * (this.len + input.length));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
  }
}

if (typeof registerProcessor === "function") {
  /**
   * Mono float samples -> SincResampler -> int16 frames.  Messages to the page:
   * {type: "audio", pcm: ArrayBuffer} (frameMs of 16-bit little-endian PCM; the last may be
   * shorter), {type: "level", rms} (about 10 a second, 0..1), {type: "flushed"} (after the page's
   * {type: "flush"}: everything captured was posted, the processor stops).
   */
  class PcmCaptureProcessor extends AudioWorkletProcessor {
    constructor(options) {
      super();
      const opts = (options && options.processorOptions) || {};
      this.targetRate = opts.targetRate || 16000;
      this.frameSamples = Math.max(1, Math.round((this.targetRate * (opts.frameMs || 40)) / 1000));
      this.resampler = new SincResampler(sampleRate, this.targetRate); // sampleRate: the context's rate
      this.frame = new Int16Array(this.frameSamples);
      this.fill = 0;
      this.levelSum = 0;
      this.levelCount = 0;
      this.levelEvery = Math.round(this.targetRate / 10);
      this.mono = null;
      this.running = true;
      this.port.onmessage = (event) => {
        if (event.data && event.data.type === "flush") this.flush();
      };
    }

    process(inputs) {
      if (!this.running) return false;
      const channels = inputs[0];
      if (channels && channels.length > 0 && channels[0].length > 0) {
        let mono = channels[0];
        if (channels.length > 1) {
          if (!this.mono || this.mono.length !== mono.length) this.mono = new Float32Array(mono.length);
          this.mono.fill(0);
          for (const ch of channels) for (let i = 0; i < ch.length; i++) this.mono[i] += ch[i] / channels.length;
          mono = this.mono;
        }
        this.emit(this.resampler.process(mono));
      }
      return true;
    }

    emit(samples) {
      for (let i = 0; i < samples.length; i++) {
        const s = Math.max(-1, Math.min(1, samples[i]));
        this.frame[this.fill++] = Math.round(s < 0 ? s * 32768 : s * 32767);
        this.levelSum += s * s;
        if (++this.levelCount === this.levelEvery) {
          this.port.postMessage({ type: "level", rms: Math.sqrt(this.levelSum / this.levelCount) });
          this.levelSum = 0;
          this.levelCount = 0;
        }
        if (this.fill === this.frameSamples) {
          this.port.postMessage({ type: "audio", pcm: this.frame.buffer }, [this.frame.buffer]);
          this.frame = new Int16Array(this.frameSamples);
          this.fill = 0;
        }
      }
    }

    flush() {
      if (!this.running) return;
      this.emit(this.resampler.flush());
      if (this.fill > 0) {
        const rest = this.frame.slice(0, this.fill);
        this.port.postMessage({ type: "audio", pcm: rest.buffer }, [rest.buffer]);
        this.fill = 0;
      }
      this.running = false;
      this.port.postMessage({ type: "flushed" });
    }
  }

  registerProcessor("pcm-capture", PcmCaptureProcessor);
} else {
  globalThis.SincResampler = SincResampler;
}
