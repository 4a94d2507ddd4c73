#!/usr/bin/env python3
"""Generalization set: seeded, reproducible variants of the reference speech sets.

Reads every file with a ``.txt`` reference from ``shared/data/speech/en`` (16 kHz) and
``shared/data/speech/tel`` (8 kHz; ``silero_aepyx_8k`` has no reference and is skipped) at its
set's native rate and writes, for each variant, ``<out>/<set>/<variant>/<stem>.wav`` (int16
PCM WAV at the set's rate) with the reference copied beside it as ``<stem>.txt``:

- ``orig``: the file unchanged;
- ``level-20``, ``level-45``, ``level-65``: scaled so the whole-file RMS is -20, -45, -65 dBFS
  (full scale = RMS 32768, as ``vad.silence_floor_dbfs``); float math, then rounded to int16.
  Samples beyond int16 are clipped and **counted** (the summary shows them; the level is never
  lowered to avoid clipping);
- ``opus``: Ogg/Opus at ``compression_level`` 0.96 (libsndfile's linear 256 -> 6 kbit/s scale:
  about 16 kbit/s nominal, 18 kbit/s measured with the container) and decoded back;
- ``mp3``: MPEG-1/2 Layer III, VBR at ``compression_level`` 0.9 (about 24 kbit/s at 16 kHz,
  19 kbit/s at 8 kHz) and decoded back.  VBR because libsndfile writes the LAME gapless header
  only then: its CBR output decodes 1105 samples late and longer.  Both codecs run at the set's
  rate (libsndfile's Opus accepts 8/12/16/24/48 kHz, other rates go through 48 kHz with soxr);
- ``white10``: white Gaussian noise at 10 dB SNR;
- ``babble10``: babble at 10 dB SNR: ``--babble-talkers`` (4) OTHER files of the same set
  (seeded choice from every referenced file of the set, whatever ``--files`` says), each
  normalized to the same active-speech RMS, started at a random offset, looped to the file's
  length, summed.

Extra conditions, built only when named in ``--variants`` and never part of ``mix`` (write them
to their own ``--out``, e.g. ``bench/results/variants-extra``, so that the default set and its
means stay comparable over time):

- ``reverb-0.5``: a room: the file convolved with a synthetic impulse response (a unit direct
  path, then seeded Gaussian noise decaying by 60 dB in RT60 = 0.5 s, starting 3 ms later,
  with the tail's energy equal to the direct path's: direct-to-reverberant ratio 0 dB; Lehmann &
  Johansson's exponential model of late reverberation), re-levelled to the file's RMS;
- ``reverb-far``: a speakerphone across a larger room: RT60 0.9 s, direct-to-reverberant ratio
  -8 dB;
- ``loss5``, ``loss10``: RTP packet loss without concealment: 20 ms packets zeroed, a loss
  starting at each packet with the probability that gives 5 % (10 %) of packets lost overall,
  in bursts of 1-2 (1-3) packets (a two-state, Gilbert-like channel);
- ``music15``: hold music under the speech (an IVR prompt over a music bed):
  ``bench/signals.hold_music`` 15 dB below the active-speech RMS, at the set's rate;
- ``clip12``: a hot line: the file amplified until its peak is 12 dB above int16 full scale,
  then hard-clipped there (the clipped samples are counted, as for the levels);
- ``gsm``, ``g721``: the GSM 06.10 full-rate codec (13 kbit/s) and G.721 32 kbit/s ADPCM
  (ITU-T G.721, since G.726), both through libsndfile in a WAV container at 8 kHz (the
  codecs' only rate: a 16 kHz file goes down and back up with soxr, so it also loses
  everything above 4 kHz);
- ``hum20``: mains hum on an analog line: 50 Hz and its odd harmonics up to 950 Hz (amplitude
  1/n, seeded phases), 20 dB below the active-speech RMS;
- ``noisy-gsm-45``: several faults of one bad line at once: white noise 15 dB under the
  speech, then the GSM round trip, then re-levelled to -45 dBFS RMS;
- ``alt-20-60``: two parties at very different levels on one mono line (a loud agent's
  headset, a quiet caller): the set's files in sorted order alternate between -20 and -60 dBFS
  RMS, so that each session has a level jump of 40 dB at every file.

SNR is relative to the file's **active-speech RMS**: the RMS over the 30 ms frames whose
energy is within 30 dB of the file's loudest frame (silences and pauses do not lower it).
The noise power is the mean over the whole file (white noise is stationary; the babble sum is
nearly so).  ``mix`` (``--mix``, on by default) holds every source file once, as one of the
non-``orig`` variants (files in a seeded order, variants assigned cyclically, so each variant
gets an equal share), with ``mix.tsv`` listing file -> variant: one benchmark run over ``mix``
covers every condition at the set's original duration.  The ``mix`` files are written copies
(the same samples as in the variant's own directory), never links.

Every random draw comes from ``numpy.random.SeedSequence([seed, crc32("set/variant/file")])``,
so a file's variant is the same whatever ``--files``/``--variants`` select, and a rebuild with
the same ``--seed`` gives identical files (the codecs are deterministic).  Rebuilding a variant
first removes that directory's ``.wav``/``.txt`` files.  Writes ``<out>/<set>/build.json``
(parameters and per-file stats) and prints a summary table per set (variant, files, seconds,
mean RMS dBFS, clipped samples, codec bitrate).

    .venv/bin/python bench/variants.py [--out bench/results/variants] [--seed 0] [--sets en,tel]
        [--variants orig,level-20,...] [--no-mix] [--files N]
    .venv/bin/python bench/variants.py --variants reverb-0.5,reverb-far,loss5,loss10,music15,clip12,gsm,g721,hum20,noisy-gsm-45,alt-20-60 --no-mix \
        --out bench/results/variants-extra

Then ``bench/generalization.py`` measures streaming and offline WER on each variant.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from whisper_streaming.client.audio_files import load_pcm16  # noqa: E402

SPEECH_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speech"
SETS: dict[str, tuple[Path, int]] = {"en": (SPEECH_DIR / "en", 16000), "tel": (SPEECH_DIR / "tel", 8000)}
"""Set name -> (source directory, native sample rate)."""
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "variants"
VARIANTS = ("orig", "level-20", "level-45", "level-65", "opus", "mp3", "white10", "babble10")
EXTRA_VARIANTS = ("reverb-0.5", "reverb-far", "loss5", "loss10", "music15", "clip12", "gsm", "g721", "hum20", "noisy-gsm-45",
                  "alt-20-60")
"""Built only when asked for; not in ``mix`` (module docstring)."""
MIX = "mix"
MIX_VARIANTS = tuple(v for v in VARIANTS if v != "orig")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

FULL_SCALE = 32768.0
FRAME_MS = 30
ACTIVE_RANGE_DB = 30.0
SNR_DB = 10.0
BABBLE_TALKERS = 4
OPUS_LEVEL = 0.96  # libsndfile: bitrate = 256 kbit/s - level * 250 kbit/s -> 16 kbit/s nominal
MP3_LEVEL = 0.9
MP3_BITRATE_MODE = "VARIABLE"
OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
MP3_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

Float = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Source:
    """One referenced source file at its set's rate (samples in int16 units, as float64)."""

    stem: str
    samples: Float
    reference: Path


@dataclass
class VariantFile:
    """A built variant of one file: int16 samples and what was done to them."""

    samples: npt.NDArray[np.int16]
    clipped: int
    info: dict[str, object] = field(default_factory=dict)


def rms_dbfs(x: npt.ArrayLike) -> float:
    """Whole-signal RMS in dBFS (full scale = RMS 32768); -inf for silence."""
    a = np.asarray(x, dtype=np.float64)
    rms = float(np.sqrt(np.mean(a * a))) if a.size else 0.0
    return 20.0 * np.log10(rms / FULL_SCALE) if rms > 0 else float("-inf")


def active_speech_rms(x: Float, sample_rate_hz: int, *, frame_ms: int = FRAME_MS, range_db: float = ACTIVE_RANGE_DB) -> float:
    """RMS over the ``frame_ms`` frames whose energy is within ``range_db`` of the loudest frame."""
    n = sample_rate_hz * frame_ms // 1000
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    energy = np.mean(frames * frames, axis=1)
    top = float(energy.max())
    if top <= 0:
        return 0.0
    active = energy[energy >= top * 10.0 ** (-range_db / 10.0)]
    return float(np.sqrt(np.mean(active)))


def to_int16(x: Float) -> tuple[npt.NDArray[np.int16], int]:
    """Round to int16, clipping at the limits; returns the samples and how many were clipped."""
    r = np.round(x)
    clipped = int(np.count_nonzero((r > 32767) | (r < -32768)))
    return np.clip(r, -32768, 32767).astype(np.int16), clipped


def relevel(x: Float, target_dbfs: float) -> Float:
    """``x`` scaled so its whole-file RMS is ``target_dbfs``."""
    current = rms_dbfs(x)
    return x * 10.0 ** ((target_dbfs - current) / 20.0) if np.isfinite(current) else x.copy()


def codec_roundtrip(x: Float, sample_rate_hz: int, codec: str) -> tuple[Float, float]:
    """Encode ``x`` with ``codec`` (opus, mp3, gsm or g721) in memory with libsndfile and decode it back at
    ``sample_rate_hz``; returns the decoded samples (int16 units, same length) and the bitrate
    of the encoded file in kbit/s (container included)."""
    import soundfile
    import soxr

    if codec == "opus":
        fmt, subtype, level, mode, rates = "OGG", "OPUS", OPUS_LEVEL, None, OPUS_RATES_HZ
    elif codec == "mp3":
        fmt, subtype, level, mode, rates = "MP3", "MPEG_LAYER_III", MP3_LEVEL, MP3_BITRATE_MODE, MP3_RATES_HZ
    elif codec in ("gsm", "g721"):
        fmt, subtype, level, mode, rates = "WAV", {"gsm": "GSM610", "g721": "G721_32"}[codec], None, None, (8000,)
    else:
        raise ValueError(f"unknown codec {codec!r}")
    if subtype not in soundfile.available_subtypes(fmt):
        raise RuntimeError(f"this libsndfile cannot write {fmt}/{subtype}")
    rate = sample_rate_hz if sample_rate_hz in rates else max(rates)
    audio = (x / FULL_SCALE).astype(np.float32)
    if rate != sample_rate_hz:
        audio = soxr.resample(audio, sample_rate_hz, rate, quality="VHQ")
    buf = io.BytesIO()
    soundfile.write(buf, audio, rate, format=fmt, subtype=subtype, compression_level=level, bitrate_mode=mode)
    kbps = len(buf.getvalue()) * 8 / (len(audio) / rate) / 1000
    buf.seek(0)
    decoded, decoded_rate = soundfile.read(buf, dtype="float32", always_2d=True)
    y = decoded.mean(axis=1)
    if decoded_rate != sample_rate_hz:
        y = soxr.resample(y, decoded_rate, sample_rate_hz, quality="VHQ")
    y = y.astype(np.float64) * FULL_SCALE
    y = y[: len(x)] if len(y) >= len(x) else np.concatenate([y, np.zeros(len(x) - len(y))])
    return y, kbps


def rng_for(seed: int, set_name: str, variant: str, stem: str) -> np.random.Generator:
    """The generator of one (set, variant, file): independent of which other files are built."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(f"{set_name}/{variant}/{stem}".encode())]))


def white_noise(x: Float, sample_rate_hz: int, snr_db: float, rng: np.random.Generator) -> tuple[Float, dict[str, object]]:
    """``x`` plus white Gaussian noise ``snr_db`` below its active-speech RMS."""
    speech = active_speech_rms(x, sample_rate_hz)
    noise = rng.standard_normal(len(x)) * speech * 10.0 ** (-snr_db / 20.0)
    return x + noise, {"snr_db": snr_db, "speech_rms_dbfs": 20 * np.log10(max(speech, 1e-9) / FULL_SCALE), "noise_rms_dbfs": rms_dbfs(noise)}


def babble_noise(x: Float, sample_rate_hz: int, talkers: list[Source], snr_db: float, rng: np.random.Generator) -> tuple[Float, dict[str, object]]:
    """``x`` plus the sum of ``talkers`` (each normalized to unit active-speech RMS, random start,
    looped to ``len(x)``), scaled so its RMS is ``snr_db`` below ``x``'s active-speech RMS."""
    total = np.zeros(len(x))
    offsets = []
    for t in talkers:
        level = active_speech_rms(t.samples, sample_rate_hz)
        if level <= 0:
            continue
        offset = int(rng.integers(len(t.samples)))
        offsets.append(offset)
        looped = np.resize(np.roll(t.samples, -offset), len(x))
        total += looped / level
    speech = active_speech_rms(x, sample_rate_hz)
    noise_rms = float(np.sqrt(np.mean(total * total))) if len(total) else 0.0
    scale = speech * 10.0 ** (-snr_db / 20.0) / noise_rms if noise_rms > 0 else 0.0
    return x + total * scale, {"snr_db": snr_db, "talkers": [t.stem for t in talkers], "offsets": offsets}


def room_impulse_response(sample_rate_hz: int, rt60_s: float, drr_db: float, rng: np.random.Generator) -> Float:
    """A unit direct path at sample 0, then seeded Gaussian noise from 3 ms on, decaying by 60 dB
    in ``rt60_s`` (to 1.2 * ``rt60_s``), scaled so the direct-to-reverberant energy ratio is ``drr_db``."""
    n = int(1.2 * rt60_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    tail = rng.standard_normal(n) * np.exp(-np.log(1000.0) * t / rt60_s)
    tail[: int(0.003 * sample_rate_hz)] = 0.0
    tail *= 10.0 ** (-drr_db / 20.0) / np.sqrt(np.sum(tail * tail))
    tail[0] = 1.0
    return tail


def reverberate(x: Float, sample_rate_hz: int, rt60_s: float, drr_db: float, rng: np.random.Generator) -> tuple[Float, dict[str, object]]:
    """``x`` through :func:`room_impulse_response`, cut to ``len(x)`` and re-levelled to ``x``'s RMS."""
    from scipy.signal import fftconvolve

    y = fftconvolve(x, room_impulse_response(sample_rate_hz, rt60_s, drr_db, rng))[: len(x)]
    gain = 10.0 ** ((rms_dbfs(x) - rms_dbfs(y)) / 20.0) if np.any(y) else 1.0
    return y * gain, {"rt60_s": rt60_s, "drr_db": drr_db}


def packet_loss(x: Float, sample_rate_hz: int, loss: float, max_burst: int, rng: np.random.Generator) -> tuple[Float, dict[str, object]]:
    """``x`` with 20 ms packets zeroed: at each packet a loss starts with probability
    ``loss / mean burst`` and lasts 1..``max_burst`` packets (uniform), so about ``loss`` of the
    packets are lost."""
    n = int(0.02 * sample_rate_hz)
    packets = -(-len(x) // n)
    start_p = loss / ((1 + max_burst) / 2)
    y = x.copy()
    lost = i = 0
    while i < packets:
        if rng.random() < start_p:
            k = int(rng.integers(1, max_burst + 1))
            y[i * n:(i + k) * n] = 0.0
            lost += min(k, packets - i)
            i += k
        else:
            i += 1
    return y, {"packets_lost": lost, "packets": packets}


def music_bed(x: Float, sample_rate_hz: int, snr_db: float, seed: int) -> tuple[Float, dict[str, object]]:
    """``x`` plus ``bench.signals.hold_music`` (resampled from its 16 kHz with soxr) ``snr_db``
    below ``x``'s active-speech RMS."""
    import soxr

    from bench.signals import RATE, hold_music

    music = hold_music(seconds=len(x) / sample_rate_hz + 1.0, seed=seed)
    if sample_rate_hz != RATE:
        music = soxr.resample(music, RATE, sample_rate_hz)
    music = np.resize(music, len(x))
    speech = active_speech_rms(x, sample_rate_hz)
    level = float(np.sqrt(np.mean(music * music)))
    scale = speech * 10.0 ** (-snr_db / 20.0) / level if level > 0 else 0.0
    return x + music * scale, {"snr_db": snr_db, "music_seed": seed}


def mains_hum(x: Float, sample_rate_hz: int, snr_db: float, rng: np.random.Generator, *, mains_hz: float = 50.0,
              top_hz: float = 1000.0) -> tuple[Float, dict[str, object]]:
    """``x`` plus ``mains_hz`` and its odd harmonics below ``top_hz`` (amplitude 1/n, phases from
    ``rng``: the spectrum of a rectified, clipped mains field), ``snr_db`` below ``x``'s
    active-speech RMS."""
    t = np.arange(len(x)) / sample_rate_hz
    hum = np.zeros(len(x))
    for n in range(1, int(top_hz // mains_hz) + 1, 2):
        if n * mains_hz < sample_rate_hz / 2:
            hum += np.sin(2 * np.pi * n * mains_hz * t + rng.uniform(0, 2 * np.pi)) / n
    level = active_speech_rms(x, sample_rate_hz)
    rms = float(np.sqrt(np.mean(hum**2))) if len(hum) else 0.0
    if rms > 0:
        hum *= level / rms / 10 ** (snr_db / 20)
    return x + hum, {"snr_db": snr_db, "mains_hz": mains_hz}


def make_variant(set_name: str, variant: str, source: Source, pool: list[Source], sample_rate_hz: int, *, seed: int = 0,
                 babble_talkers: int = BABBLE_TALKERS) -> VariantFile:
    """Build ``variant`` of ``source``; ``pool`` is every referenced file of the set (babble talkers)."""
    x = source.samples
    info: dict[str, object] = {}
    if variant == "orig":
        y = x
    elif variant.startswith("level"):
        target = -float(variant.split("-", 1)[1])
        y = relevel(x, target)
        info["gain_db"] = target - rms_dbfs(x)
    elif variant in ("opus", "mp3", "gsm", "g721"):
        y, kbps = codec_roundtrip(x, sample_rate_hz, variant)
        info["kbps"] = kbps
    elif variant.startswith("white"):
        y, info = white_noise(x, sample_rate_hz, float(variant[len("white"):]), rng_for(seed, set_name, variant, source.stem))
    elif variant.startswith("babble"):
        rng = rng_for(seed, set_name, variant, source.stem)
        others = [s for s in pool if s.stem != source.stem]
        k = min(babble_talkers, len(others))
        chosen = [others[i] for i in sorted(rng.choice(len(others), size=k, replace=False))] if k else []
        y, info = babble_noise(x, sample_rate_hz, chosen, float(variant[len("babble"):]), rng)
    elif variant.startswith("reverb"):
        rt60_s, drr_db = (0.9, -8.0) if variant == "reverb-far" else (float(variant[len("reverb-"):]), 0.0)
        y, info = reverberate(x, sample_rate_hz, rt60_s, drr_db, rng_for(seed, set_name, variant, source.stem))
    elif variant.startswith("loss"):
        loss = float(variant[len("loss"):]) / 100.0
        y, info = packet_loss(x, sample_rate_hz, loss, 2 if loss <= 0.05 else 3, rng_for(seed, set_name, variant, source.stem))
    elif variant.startswith("music"):
        bed_seed = int(rng_for(seed, set_name, variant, source.stem).integers(2**31))
        y, info = music_bed(x, sample_rate_hz, float(variant[len("music"):]), bed_seed)
    elif variant.startswith("hum"):
        y, info = mains_hum(x, sample_rate_hz, float(variant[len("hum"):]), rng_for(seed, set_name, variant, source.stem))
    elif variant == "noisy-gsm-45":
        y, info = white_noise(x, sample_rate_hz, 15.0, rng_for(seed, set_name, variant, source.stem))
        y, kbps = codec_roundtrip(y, sample_rate_hz, "gsm")
        info["kbps"] = kbps
        y = relevel(y, -45.0)
    elif variant == "alt-20-60":
        position = next((i for i, s in enumerate(pool) if s.stem == source.stem), 0)
        target = -20.0 if position % 2 == 0 else -60.0
        y = relevel(x, target)
        info["gain_db"] = target - rms_dbfs(x)
    elif variant.startswith("clip"):
        over_db = float(variant[len("clip"):])
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        gain = FULL_SCALE * 10 ** (over_db / 20) / peak if peak > 0 else 1.0
        y = x * gain
        info["gain_db"] = 20 * np.log10(gain)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    samples, clipped = to_int16(y)
    return VariantFile(samples, clipped, info)


def load_sources(directory: Path, sample_rate_hz: int) -> list[Source]:
    """Every audio file of ``directory`` with a ``.txt`` reference (sorted), at ``sample_rate_hz``."""
    out = []
    for path in sorted(directory.iterdir()):
        ref = path.with_suffix(".txt")
        if path.suffix.lower() in AUDIO_SUFFIXES and ref.exists():
            out.append(Source(path.stem, load_pcm16(path, sample_rate_hz=sample_rate_hz).astype(np.float64), ref))
    return out


def mix_assignment(stems: list[str], seed: int, set_name: str) -> dict[str, str]:
    """File stem -> variant for ``mix``: a seeded order of the files, variants in turn."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(f"{set_name}/{MIX}".encode())]))
    order = [stems[i] for i in rng.permutation(len(stems))]
    return {stem: MIX_VARIANTS[i % len(MIX_VARIANTS)] for i, stem in enumerate(order)}


def write_wav(path: Path, samples: npt.NDArray[np.int16], sample_rate_hz: int) -> None:
    import soundfile

    soundfile.write(str(path), samples, sample_rate_hz, subtype="PCM_16", format="WAV")


def clean_dir(directory: Path) -> None:
    """Remove the files a previous build wrote into ``directory`` (``.wav``, ``.txt``, ``mix.tsv``)."""
    if directory.is_dir():
        for p in directory.iterdir():
            if p.is_file() and (p.suffix in (".wav", ".txt") or p.name == "mix.tsv"):
                p.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def build_set(set_name: str, out: Path, variants: list[str], *, seed: int, mix: bool, limit: int | None,
              babble_talkers: int) -> dict[str, object]:
    """Write the variants of one set; returns the build record (also written as ``build.json``)."""
    directory, rate = SETS[set_name]
    pool = load_sources(directory, rate)
    selected = pool[:limit] if limit else pool
    built: dict[tuple[str, str], VariantFile] = {}
    record: dict[str, object] = {"source": str(directory), "sample_rate_hz": rate, "seed": seed, "variants": {}}
    targets = list(variants) + ([MIX] if mix else [])
    assignment = mix_assignment([s.stem for s in pool], seed, set_name)
    for variant in targets:
        vdir = out / set_name / variant
        clean_dir(vdir)
        files = []
        for src in selected:
            v = assignment[src.stem] if variant == MIX else variant
            if (v, src.stem) not in built:
                built[(v, src.stem)] = make_variant(set_name, v, src, pool, rate, seed=seed, babble_talkers=babble_talkers)
            vf = built[(v, src.stem)]
            write_wav(vdir / f"{src.stem}.wav", vf.samples, rate)
            shutil.copyfile(src.reference, vdir / f"{src.stem}.txt")
            files.append({"file": f"{src.stem}.wav", "variant": v, "duration_s": len(vf.samples) / rate,
                          "rms_dbfs": rms_dbfs(vf.samples), "clipped": vf.clipped, **vf.info})
        if variant == MIX:
            (vdir / "mix.tsv").write_text("".join(f"{f['file']}\t{f['variant']}\n" for f in files), encoding="utf-8")
        record["variants"][variant] = files  # type: ignore[index]
    (out / set_name).mkdir(parents=True, exist_ok=True)
    path = out / set_name / "build.json"
    try:  # keep the records of variants built earlier into the same directory with the same seed
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict) and earlier.get("seed") == seed and earlier.get("source") == record["source"]:
        record["variants"] = {**earlier.get("variants", {}), **record["variants"]}  # type: ignore[dict-item]
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record


def summary_rows(record: dict[str, object]) -> list[dict[str, object]]:
    """One row per variant: files, seconds, mean RMS dBFS, clipped samples, mean kbit/s."""
    rows = []
    for variant, files in record["variants"].items():  # type: ignore[union-attr]
        kbps = [f["kbps"] for f in files if "kbps" in f]
        levels = [f["rms_dbfs"] for f in files if np.isfinite(f["rms_dbfs"])]
        rows.append({"variant": variant, "files": len(files), "seconds": sum(f["duration_s"] for f in files),
                     "mean_rms_dbfs": float(np.mean(levels)) if levels else float("nan"),
                     "clipped": sum(f["clipped"] for f in files), "clipped_files": sum(1 for f in files if f["clipped"]),
                     "samples": sum(round(f["duration_s"] * record["sample_rate_hz"]) for f in files),  # type: ignore[operator]
                     "kbps": float(np.mean(kbps)) if kbps else None})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default bench/results/variants)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sets", default="en,tel", help=f"comma-separated, of {', '.join(SETS)}")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of " + ", ".join(VARIANTS) + "; or of the extras " + ", ".join(EXTRA_VARIANTS))
    p.add_argument("--mix", action=argparse.BooleanOptionalAction, default=True, help="also build mix/ (default on)")
    p.add_argument("--files", type=int, default=None, help="only the first N referenced files of each set")
    p.add_argument("--babble-talkers", type=int, default=BABBLE_TALKERS)
    args = p.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    for name in sets:
        if name not in SETS:
            p.error(f"unknown set {name!r}; known: {', '.join(SETS)}")
    for v in variants:
        if v not in VARIANTS + EXTRA_VARIANTS:
            p.error(f"unknown variant {v!r}; known: {', '.join(VARIANTS + EXTRA_VARIANTS)}")
    t_start = time.perf_counter()
    for name in sets:
        t0 = time.perf_counter()
        record = build_set(name, args.out, variants, seed=args.seed, mix=args.mix, limit=args.files, babble_talkers=args.babble_talkers)
        rows = summary_rows(record)
        print(f"\n{name}: {record['source']} at {record['sample_rate_hz']} Hz -> {args.out / name} (seed {args.seed}, {time.perf_counter() - t0:.1f} s)")
        print("| variant | files | audio (s) | mean RMS (dBFS) | clipped samples | codec kbit/s |\n|---|---:|---:|---:|---:|---:|")
        for r in rows:
            clipped = f"{r['clipped']} ({100 * r['clipped'] / max(r['samples'], 1):.3f} %, {r['clipped_files']} files)" if r["clipped"] else "0"
            kbps = f"{r['kbps']:.1f}" if r["kbps"] is not None else ""
            print(f"| {r['variant']} | {r['files']} | {r['seconds']:.1f} | {r['mean_rms_dbfs']:.1f} | {clipped} | {kbps} |")
        for r in rows:
            if r["clipped"]:
                print(f"note: {name}/{r['variant']}: {r['clipped']} samples clipped at int16 full scale in {r['clipped_files']} files "
                      "(level kept; see build.json for per-file counts)")
    print(f"\nbuilt in {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
