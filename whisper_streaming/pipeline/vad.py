"""Voice-activity endpointing: 16-bit PCM samples in, whole utterances out.

This module is *pure*: no I/O, no wall clock, no threads, no logging.  Every time it reports
comes from sample counts (sample 0 is the first sample fed to a :class:`VadSegmenter`).

How it works
------------
Audio is cut into frames of ``VadOptions.frame_samples`` samples and each frame is classified
voiced/unvoiced by the WebRTC voice activity detector (``webrtcvad.Vad(mode).is_speech``).
Per the py-webrtcvad README (https://github.com/wiseman/py-webrtcvad), the detector accepts
only 16-bit mono PCM frames of 10, 20 or 30 ms at 8000, 16000, 32000 or 48000 Hz, and its
aggressiveness ``mode`` is an integer 0..3 (0 least aggressive about filtering out non-speech,
3 most aggressive).

Endpointing follows the ring-buffer idea of py-webrtcvad's ``example.py``
(``vad_collector``): while idle, keep a short history of recent frames and *trigger* when
enough of the last few frames are voiced; the audio of the utterance then starts a pre-roll
before the first voiced frame so word onsets are never clipped.  While in speech, the
utterance ends after a run of consecutive unvoiced frames (half as many once its speech is
long, when a frame far under its loudest also counts as unvoiced: ``_LONG_SPEECH_QUIET_DB``).
On top of that this module adds a
hard maximum utterance length (cut in the longest pause of the last 30 %, or, where the detector
found none, in its quietest 150 ms), a minimum amount of voiced
audio (to drop clicks), and exact sample bookkeeping so that:

* no sample ever appears in two utterances;
* utterances split by the maximum length tile the audio contiguously (no gap, no overlap);
* the result does not depend on how the stream is chunked into :meth:`VadSegmenter.feed`
  calls (bytes or arrays, any sizes).

Note that the WebRTC detector itself is stateful (it adapts to the noise floor) and has a
built-in hangover of a few frames after speech stops (up to about 150 ms with 30 ms frames),
so ``speech_end_sample`` typically lies slightly after the true end of speech.
"""

from __future__ import annotations

import collections
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from whisper_streaming.core.audio_format import DEFAULT_SAMPLE_RATE_HZ
from whisper_streaming.errors import UsageError

__all__ = ["VadOptions", "EndReason", "Utterance", "VadSegmenter", "dynamic_range_db"]

#: Sample rates accepted by WebRTC VAD (py-webrtcvad README).
SUPPORTED_SAMPLE_RATES_HZ: tuple[int, ...] = (8000, 16000, 32000, 48000)
#: Frame durations accepted by WebRTC VAD (py-webrtcvad README).
SUPPORTED_FRAME_MS: tuple[int, ...] = (10, 20, 30)

# Minimum pre-roll: keeps word onsets (plosives, fricatives the VAD often misses) intact.
_MIN_PREROLL_MS = 200
# When an utterance must be cut at the maximum length, look for a pause in this final
# fraction of the maximum length.  In the same final fraction, half the endpointing silence
# already ends an utterance (a long utterance ends at its next pause, not at the cap).
_CUT_SEARCH_FRACTION = 0.3
# A cut at the cap goes in the longest run of unvoiced frames of that window when one lasts at
# least _DETECTED_PAUSE_MS; else in the quietest stretch of _QUIET_SPAN_MS of whole frames
# (VadSegmenter._pause_point; both rounded up to whole frames).
_DETECTED_PAUSE_MS = 90
# Once an utterance's speech is long (the last _CUT_SEARCH_FRACTION of the cap), a frame at least
# _LONG_SPEECH_QUIET_DB under its loudest frame is a pause whatever the detector says.  WebRTC
# VAD keeps calling frames voiced after speech (its hangover, up to 5 frames of 30 ms:
# kOverHangMax2 in common_audio/vad/vad_core.c, and on these lines often longer: 300-450 ms of
# -60 to -72 dBFS), so on a clean line a 250 ms pause between two read sentences (an IVR
# prompt, words peaking at -10 dBFS) shows fewer than the 8 unvoiced frames of the long-speech
# endpoint, and the speech ran on to the cap, its text up to 3 s late.  The price: past 7 s, a
# soft second talker that far under the first on a mono mix ends the utterance like a pause
# and starts the next one (the 60 ms between the trailing audio and the endpoint are in
# neither).  30 dB under the loudest frame is under ITU-T
# P.56's activity threshold (15.9 dB under the active speech level, itself some 10 dB under the
# loudest 30 ms frame); on a noisy line (10-20 dB SNR) no frame is that far down, and nothing
# changes there.
_LONG_SPEECH_QUIET_DB = 30.0
_LONG_SPEECH_QUIET_RATIO = 10.0 ** (-_LONG_SPEECH_QUIET_DB / 10.0)
_QUIET_SPAN_MS = 150


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class VadOptions:
    """Settings of a :class:`VadSegmenter`.  Validated on construction.

    Attributes:
        mode: WebRTC VAD aggressiveness, int 0..3 (py-webrtcvad README).
        sample_rate_hz: sample rate of the audio in Hz: 8000, 16000, 32000 or 48000
            (the rates WebRTC VAD accepts).
        frame_ms: frame duration in ms fed to WebRTC VAD: 10, 20 or 30.
        silence_frames: number (>= 1) of consecutive unvoiced frames that end an
            utterance (default 16 x 30 ms = 480 ms).  Once an utterance's speech reaches the
            last 30 % of ``max_speech_s`` (7 s of 10), half as many (rounded down, >= 1) end
            it: a long utterance ends at its next pause instead of running on to the cap,
            where it would be cut at a pause that lies up to 3 s back (words the caller said
            seconds earlier would wait for the cap).
        max_speech_s: maximum duration of an utterance's audio in seconds (finite, > 0);
            must exceed the audio present at trigger time (``preroll_ms`` plus
            ``start_window_frames`` frames).
        preroll_ms: audio in ms kept before the first voiced frame, int >= 200.
        start_window_frames: trigger window length in frames (>= 1).
        start_voiced_frames: an utterance starts when at least this many (1 ..
            ``start_window_frames``) of the last ``start_window_frames`` frames are voiced.
        min_speech_ms: utterances with less voiced audio than this (ms, >= 0) are discarded.
        trailing_ms: audio (ms, >= 0; at most ``silence_frames * frame_ms`` is used) kept after the last
            voiced frame of an utterance that ends in silence or at the end of the stream; the
            rest of the endpointing silence is not part of any utterance.  Once that much
            silence has followed the speech the utterance's audio is final, so
            :attr:`VadSegmenter.tentative` can offer it for transcription before the endpoint
            is reached (speculative decoding); WebRTC VAD already counts up to 5 frames of 30 ms of
            hangover as voiced (``kOverHangMax2`` in ``vad_core.c``), so the words' ends are in.
        sentence_end_silence_frames: unvoiced frames that end an utterance once the session
            has said its speculative text ends a sentence (:meth:`VadSegmenter.end_early`;
            semantic endpointing); None: off, ``silence_frames`` always.  Never fewer than the
            frames of ``trailing_ms`` (the speculation's audio must be complete).
        speculation_backoff_ms: extra silence (ms, >= 0) that :attr:`VadSegmenter.tentative`
            waits for, beyond ``trailing_ms``, per offer of the same utterance that speech
            withdrew (resumed before the endpoint); 0 (the default) = off, every pause of
            ``trailing_ms`` makes an offer.  Each withdrawn offer costs an encoder pass (the
            decode is stopped, ``AsrEngine.transcribe(should_stop=...)``), so this trades
            latency for idle CPU: at 120 ms the 8 kHz white-noise variant of
            ``bench/variants.py`` withdraws 54 s of offered audio instead of 104 s, but its
            confirmed offers come 62 ms later on average and 6 of 33 utterances lose theirs
            (``docs/benchmarks.md``, "Speculation back-off").  The utterances are the same;
            with ``sentence_end_silence_frames`` set an utterance may end later (its
            speculative text comes later), and partial hypotheses may run in the extra silence.
        silence_floor_dbfs: a frame whose RMS level is below this (dBFS, -120..0; full scale
            = RMS 32768) is unvoiced whatever the detector says; ``None`` trusts the detector.
            Why: after some utterances WebRTC VAD keeps reporting speech through exact
            digital silence (all-zero samples, as a muted phone or a PBX without RTP sends)
            far longer than its documented hangover (at most 5 frames of 30 ms, 7 of 20 ms, in modes 0-1,
            ``kOverHangMax2`` in ``vad_core.c``).  Measured with py-webrtcvad on the 31 files
            of ``shared/data/speech/en`` joined by 1 s all-zero gaps: 3 of 30 gaps were
            "speech" from end to end in modes 0 and 1 (1 in mode 2), joining those files into
            one utterance; with the floor, none.  -60 dBFS is far below speech (read speech is
            about -20 to -30 dBFS) and at or below the noise floor of a quiet line.  Off by
            default since the digital-silence rule below replaced it: quiet lines carry
            speech at -50 to -70 dBFS, and an RMS floor called such speech silence (a 10 s
            sentence at -65 dBFS gave no utterance at all).
        digital_silence_peak: a frame whose samples span at most this (max - min, int16
            LSB, 0..1000) is *near digital silence* (all zeros, or a few LSB of dither: a
            muted phone, a PBX without RTP).  Such a frame never raises the gain below and
            never sets it: a stream of nothing but near-silence is not amplified at all.
        digital_silence_frames: from the ``digital_silence_frames``-th frame of a run of
            near-silent frames on, frames are unvoiced whatever the detector says (>= 1).
            The first ones keep the detector's verdict if the last frame that was not
            near-silent was voiced, like its own hangover of up to 5 frames of 30 ms
            (``kOverHangMax2``), so short quiet stretches inside quiet speech behave as they do
            at a normal level; near-silence never starts speech (a fresh detector calls the
            first frames of +-2 LSB dither speech), and the detector's quirk of calling a long
            run of digital silence speech is cut off after 8 frames (240 ms).
        agc_target_dbfs: level normalisation before the detector (``None``: off).  WebRTC
            VAD is not level-invariant (its GMM features are log band energies with an
            absolute floor, ``kMinEnergy`` in ``vad_core.c``): measured on
            ``shared/data/speech/en`` re-levelled to a whole-file RMS of -65 dBFS it lost 21 %
            of the voiced frames of the original level, at -70 dBFS 31 %.  Each frame handed
            to the detector (never the audio the ASR gets) is scaled so that the loudest
            frame RMS of the last ``agc_window_ms`` (near-silent frames excluded; the
            current frame included, so a sudden loud frame is never over-amplified) sits at
            this level, with a gain in -20 .. ``agc_max_gain_db`` dB, clipped to int16.  With
            it (and the near-silence rule) the frames inside utterances agree with the original
            level's (Jaccard 0.93-0.98) from -10 to -70 dBFS; without it 0.74 at -70
            (``docs/benchmarks.md``, ``tests/test_vad.py``).
        agc_max_gain_db: the largest gain of the normalisation, dB (0..60).  45 dB brings a
            -70 dBFS whole-file RMS (loudest frames near -60) to the target; noise on an
            idle line is amplified by as much, so lower it where lines carry audible hiss
            and never quiet speech.
        min_dynamic_range_db: an utterance whose frame levels span less than this is steady
            noise or a tone, not speech, and is discarded without transcription (``None``:
            off).  The span is the 90th minus the 10th percentile of the RMS level (dB) of the
            utterance's whole frames, pre-roll and trailing audio included.  Speech rises and
            falls with its syllables by 10-40 dB; stationary noise does not: white noise of any
            level spans 0.5-1 dB (a 30 ms frame averages 480 samples), a tone or mains hum 0 dB,
            and WebRTC VAD calls all of them speech, so without this rule 10 s of white noise
            held a worker for 9 s and came back as an invented sentence (issue 19).  Measured
            (``docs/benchmarks.md``): the lowest span of any utterance of the generalization
            variants of ``shared/data/speech`` (levels, codecs, babble and white noise at 10 dB
            SNR) is 10.8 dB; speech in white noise at 0 dB SNR still spans 3.1 dB or more.
            Coloured noise (pink, brown) fluctuates more (about 6 dB) and is left to the
            decoder's own rules.
        agc_window_ms: how long the loudest frame keeps setting the gain (ms, >= frame_ms).
            10 s spans the pauses of a conversation, so the gain does not rise on the noise
            between two sentences; after a loud burst, quieter speech is under-amplified for
            up to this long.

    Raises:
        UsageError: if any field is invalid; the message lists every problem.
    """

    mode: int = 1
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ
    frame_ms: int = 30
    silence_frames: int = 16
    max_speech_s: float = 10.0
    preroll_ms: int = 300
    start_window_frames: int = 10
    start_voiced_frames: int = 3
    min_speech_ms: int = 150
    silence_floor_dbfs: float | None = None
    trailing_ms: int = 180
    digital_silence_peak: int = 4
    digital_silence_frames: int = 8
    agc_target_dbfs: float | None = -20.0
    agc_max_gain_db: float = 45.0
    agc_window_ms: int = 10000
    min_dynamic_range_db: float | None = 2.0
    sentence_end_silence_frames: int | None = None
    speculation_backoff_ms: int = 0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not _is_int(self.mode) or not 0 <= self.mode <= 3:
            problems.append(f"mode must be an int in 0..3, got {self.mode!r}")
        if not _is_int(self.sample_rate_hz) or self.sample_rate_hz not in SUPPORTED_SAMPLE_RATES_HZ:
            problems.append(
                f"sample_rate_hz must be one of {SUPPORTED_SAMPLE_RATES_HZ}, got {self.sample_rate_hz!r}"
            )
        if not _is_int(self.frame_ms) or self.frame_ms not in SUPPORTED_FRAME_MS:
            problems.append(f"frame_ms must be one of {SUPPORTED_FRAME_MS}, got {self.frame_ms!r}")
        if not _is_int(self.silence_frames) or self.silence_frames < 1:
            problems.append(f"silence_frames must be an int >= 1, got {self.silence_frames!r}")
        if not _is_int(self.preroll_ms) or self.preroll_ms < _MIN_PREROLL_MS:
            problems.append(f"preroll_ms must be an int >= {_MIN_PREROLL_MS}, got {self.preroll_ms!r}")
        if not _is_int(self.start_window_frames) or self.start_window_frames < 1:
            problems.append(f"start_window_frames must be an int >= 1, got {self.start_window_frames!r}")
        if not _is_int(self.start_voiced_frames) or self.start_voiced_frames < 1:
            problems.append(f"start_voiced_frames must be an int >= 1, got {self.start_voiced_frames!r}")
        elif _is_int(self.start_window_frames) and self.start_voiced_frames > self.start_window_frames:
            problems.append(
                f"start_voiced_frames ({self.start_voiced_frames}) must not exceed "
                f"start_window_frames ({self.start_window_frames})"
            )
        if not _is_int(self.min_speech_ms) or self.min_speech_ms < 0:
            problems.append(f"min_speech_ms must be an int >= 0, got {self.min_speech_ms!r}")
        if not _is_int(self.trailing_ms) or self.trailing_ms < 0:
            problems.append(f"trailing_ms must be an int >= 0, got {self.trailing_ms!r}")
        if not _is_int(self.speculation_backoff_ms) or self.speculation_backoff_ms < 0:
            problems.append(f"speculation_backoff_ms must be an int >= 0, got {self.speculation_backoff_ms!r}")
        early = self.sentence_end_silence_frames
        if early is not None and (not _is_int(early) or early < 1):
            problems.append(f"sentence_end_silence_frames must be None or an int >= 1, got {early!r}")
        floor = self.silence_floor_dbfs
        if floor is not None and (
            not isinstance(floor, (int, float)) or isinstance(floor, bool) or not math.isfinite(floor) or not -120.0 <= floor <= 0.0
        ):
            problems.append(f"silence_floor_dbfs must be None or a number in -120..0, got {floor!r}")
        if not _is_int(self.digital_silence_peak) or not 0 <= self.digital_silence_peak <= 1000:
            problems.append(f"digital_silence_peak must be an int in 0..1000, got {self.digital_silence_peak!r}")
        if not _is_int(self.digital_silence_frames) or self.digital_silence_frames < 1:
            problems.append(f"digital_silence_frames must be an int >= 1, got {self.digital_silence_frames!r}")
        target = self.agc_target_dbfs
        if target is not None and (not _is_number(target) or not -60.0 <= target <= 0.0):
            problems.append(f"agc_target_dbfs must be None or a number in -60..0, got {target!r}")
        if not _is_number(self.agc_max_gain_db) or not 0.0 <= self.agc_max_gain_db <= 60.0:
            problems.append(f"agc_max_gain_db must be a number in 0..60, got {self.agc_max_gain_db!r}")
        span = self.min_dynamic_range_db
        if span is not None and (not _is_number(span) or not 0.0 <= span <= 60.0):
            problems.append(f"min_dynamic_range_db must be None or a number in 0..60, got {span!r}")
        if not _is_int(self.agc_window_ms) or self.agc_window_ms < 1:
            problems.append(f"agc_window_ms must be an int >= 1, got {self.agc_window_ms!r}")
        max_ok = (
            isinstance(self.max_speech_s, (int, float))
            and not isinstance(self.max_speech_s, bool)
            and math.isfinite(self.max_speech_s)
            and self.max_speech_s > 0
        )
        if not max_ok:
            problems.append(f"max_speech_s must be a finite number > 0, got {self.max_speech_s!r}")
        elif not problems:
            trigger_ms = self.preroll_ms + self.start_window_frames * self.frame_ms
            if self.max_speech_s * 1000.0 <= trigger_ms:
                problems.append(
                    f"max_speech_s ({self.max_speech_s}) must exceed preroll_ms + "
                    f"start_window_frames * frame_ms = {trigger_ms} ms"
                )
        if problems:
            raise UsageError("invalid VadOptions: " + "; ".join(problems))

    @property
    def frame_samples(self) -> int:
        """Samples per VAD frame, e.g. 480 for 30 ms at 16 kHz."""
        return self.sample_rate_hz * self.frame_ms // 1000

    @property
    def preroll_samples(self) -> int:
        """Pre-roll length in samples."""
        return self.sample_rate_hz * self.preroll_ms // 1000

    @property
    def max_speech_samples(self) -> int:
        """Maximum utterance length in samples (rounded down, so never above ``max_speech_s``)."""
        return int(math.floor(self.max_speech_s * self.sample_rate_hz))

    @property
    def silence_floor_energy(self) -> float | None:
        """``silence_floor_dbfs`` as a sum of squared int16 samples over one frame (``None``: off)."""
        if self.silence_floor_dbfs is None:
            return None
        return self.frame_samples * (32768.0 * 10.0 ** (self.silence_floor_dbfs / 20.0)) ** 2

    @property
    def trailing_samples(self) -> int:
        """``trailing_ms`` in samples, at most the endpointing silence."""
        return min(self.sample_rate_hz * self.trailing_ms // 1000, self.silence_frames * self.frame_samples)

    @property
    def min_speech_samples(self) -> int:
        """Minimum voiced audio of an emitted utterance, in samples."""
        return self.sample_rate_hz * self.min_speech_ms // 1000


class EndReason(enum.Enum):
    """Why an utterance ended."""

    SILENCE = "silence"  #: ``silence_frames`` consecutive unvoiced frames followed speech
    MAX_LENGTH = "max_length"  #: the utterance reached ``max_speech_s`` and was cut
    FLUSH = "flush"  #: the stream ended (:meth:`VadSegmenter.flush`) during speech


@dataclass(frozen=True, eq=False)
class Utterance:
    """One detected utterance.

    All ``*_sample`` positions are absolute sample indices counted from the start of the
    stream (sample 0 = first sample fed to the segmenter).

    Attributes:
        index: 0-based sequence number within its segmenter (stream); discarded
            utterances do not consume an index.
        audio_start_sample: position of ``samples[0]``.
        speech_start_sample: start of the first voiced frame (``>= audio_start_sample``).
        speech_end_sample: end (exclusive) of the last voiced frame
            (``<= audio_start_sample + len(samples)``).
        samples: int16 array of shape ``(n,)``, mono, read-only; includes the pre-roll and,
            when the utterance ended in silence or at the end of the stream, at most
            ``trailing_ms`` after the last voiced frame.
        sample_rate_hz: sample rate in Hz.
        end_reason: why the utterance ended.
        endpoint_sample: the stream position at which the segmenter decided the utterance was
            over (it could not have been emitted earlier): for ``SILENCE`` the end of the
            ``silence_frames``-th unvoiced frame, for ``MAX_LENGTH`` where the length cap was
            reached (after the cut point, which lies in a pause), for ``FLUSH`` the end of the
            stream.  ``-1`` when unknown (utterances built by hand).  Latency is measured from
            here (``bench/stream_bench.py``).
    """

    index: int
    audio_start_sample: int
    speech_start_sample: int
    speech_end_sample: int
    samples: np.ndarray
    sample_rate_hz: int
    end_reason: EndReason
    endpoint_sample: int = -1

    @property
    def start_s(self) -> float:
        """Speech start in seconds from the start of the stream."""
        return self.speech_start_sample / self.sample_rate_hz

    @property
    def end_s(self) -> float:
        """Speech end (exclusive) in seconds from the start of the stream."""
        return self.speech_end_sample / self.sample_rate_hz

    @property
    def audio_start_s(self) -> float:
        """Position of ``samples[0]`` in seconds from the start of the stream."""
        return self.audio_start_sample / self.sample_rate_hz

    @property
    def duration_s(self) -> float:
        """Duration of ``samples`` in seconds (``len(samples) / sample_rate_hz``)."""
        return len(self.samples) / self.sample_rate_hz


def dynamic_range_db(samples: np.ndarray, frame_samples: int) -> float:
    """The 90th minus the 10th percentile of the RMS level (dB) of the whole frames of ``samples``.

    ``samples``: int16 (or float) array of shape ``(n,)``; frames of ``frame_samples``; a
    trailing partial frame is ignored.  Returns ``inf`` for fewer than 2 whole frames (too
    short to judge).  Levels are ``10 log10(mean square + 1)`` in int16 units, so digital
    silence is 0 dB, not ``-inf``.  Vectorised: about 0.2 ms for 10 s at 16 kHz.
    """
    m = len(samples) // frame_samples
    if m < 2:
        return math.inf
    frames = samples[: m * frame_samples].reshape(m, frame_samples).astype(np.float32)
    level = 10.0 * np.log10(np.einsum("ij,ij->i", frames, frames) / frame_samples + 1.0)
    p10, p90 = np.percentile(level, (10.0, 90.0))
    return float(p90 - p10)


class VadSegmenter:
    """Split one PCM stream into utterances.  One instance per stream; not thread-safe.

    Args:
        options: endpointing settings.
        is_speech: classifier ``(frame_bytes, sample_rate_hz) -> bool`` called once per
            frame with ``frame_samples`` native-endian int16 samples.  Defaults to
            ``webrtcvad.Vad(options.mode).is_speech``, which gets the level-normalised frame
            (``agc_target_dbfs``); an injected classifier (tests) gets the frame as it is.
    """

    def __init__(
        self,
        options: VadOptions = VadOptions(),
        *,
        is_speech: Callable[[bytes, int], bool] | None = None,
    ) -> None:
        if not isinstance(options, VadOptions):
            raise UsageError(f"options must be a VadOptions, got {type(options).__name__}")
        custom = is_speech is not None
        if is_speech is None:
            import webrtcvad

            is_speech = webrtcvad.Vad(options.mode).is_speech
        self._opts = options
        self._is_speech = is_speech
        self._rate = options.sample_rate_hz
        self._fs = options.frame_samples
        self._preroll = options.preroll_samples
        self._max = options.max_speech_samples
        self._min_voiced = options.min_speech_samples
        self._window = options.start_window_frames
        self._need_voiced = options.start_voiced_frames
        self._silence_frames = options.silence_frames
        self._long_silence_frames = max(1, options.silence_frames // 2)
        self._long_samples = self._max - int(self._max * _CUT_SEARCH_FRACTION)
        # the cap cut's durations in whole frames, rounded up (_pause_point)
        self._detected_pause_frames = -(-_DETECTED_PAUSE_MS * self._rate // 1000 // self._fs)
        self._quiet_span_frames = -(-_QUIET_SPAN_MS * self._rate // 1000 // self._fs)
        self._floor_energy = options.silence_floor_energy
        self._trailing = options.trailing_samples
        self._trailing_frames = -(-self._trailing // self._fs)  # unvoiced frames that complete the audio
        self._silence_peak = options.digital_silence_peak
        self._silence_run_limit = options.digital_silence_frames
        self._near_silent_run = 0
        self._last_audible_voiced = False  # the verdict on the last frame that was not near-silent
        # The normalisation compensates WebRTC VAD's level dependence; an injected classifier
        # (tests, other detectors) gets the frames as they are.
        self._agc = None if options.agc_target_dbfs is None or custom else _LevelNormalizer(options)
        self._min_span_db = options.min_dynamic_range_db
        self._steady_last = (-1, -1)
        self.steady_discarded = 0
        """Utterances discarded as steady noise or a tone (``min_dynamic_range_db``)."""

        self._closed = False
        self._received = 0
        self._next_index = 0
        self._pending = np.zeros(0, dtype=np.int16)  # partial frame, < frame_samples
        self._next_frame_start = 0  # absolute start of the next whole frame

        # Idle state: history of recent frames (pre-roll + trigger window).
        history_len = -(-self._preroll // self._fs) + self._window
        self._hist: collections.deque[np.ndarray] = collections.deque(maxlen=history_len)
        self._hist_flags: collections.deque[bool] = collections.deque(maxlen=history_len)
        self._hist_start = 0  # absolute start of self._hist[0] (when non-empty)
        self._win_flags: collections.deque[bool] = collections.deque(maxlen=self._window)
        self._win_voiced = 0

        # Speech state.  Frames are on the global frame grid except that the last one may be a
        # partial frame (only at flush); the audio starts at _audio_start inside _frames[0].
        self._triggered = False
        self._frames: list[np.ndarray] = []
        self._flags: list[bool] = []
        self._first_frame_start = 0
        self._audio_start = 0
        self._end = 0  # absolute end (exclusive) of the utterance's audio
        self._silence_run = 0
        self._peak_energy = 0.0  # mean square (int16 units) of the utterance's loudest frame
        self._voiced_end = 0  # absolute end of the last voiced frame of the utterance
        self._tentative_cache: tuple[tuple[int, int, int], Utterance] | None = None
        self._early = False  # the session said the tentative utterance's text ends a sentence
        self._early_frames = None if options.sentence_end_silence_frames is None else max(
            options.sentence_end_silence_frames, self._trailing_frames, 1)
        self.ended_early = 0
        """Utterances ended by :meth:`end_early` before ``silence_frames``."""
        self._backoff_frames = -(-options.speculation_backoff_ms // options.frame_ms)
        self._withdrawn = 0  # offers of the utterance in progress that speech withdrew
        self.offers_withdrawn = 0
        """Tentative utterances (:attr:`tentative`) that a voiced frame withdrew before the endpoint."""

    # ------------------------------------------------------------------ public API

    def end_early(self, tentative: Utterance) -> list[Utterance]:
        """The session's speculative text for ``tentative`` ends a sentence: from now on the
        utterance ends after ``sentence_end_silence_frames`` of silence instead of
        ``silence_frames``, and at once if that much has passed (returned, as :meth:`feed` would
        return it).  Nothing happens when the option is off, or when ``tentative`` is no longer
        the utterance the endpoint would emit (speech resumed, or it was emitted already); a
        voiced frame before the endpoint cancels it (the utterance goes on)."""
        if self._early_frames is None or self._closed:
            return []
        current = self.tentative
        if (current is None or current.index != tentative.index or current.audio_start_sample != tentative.audio_start_sample
                or len(current.samples) != len(tentative.samples)):
            return []
        self._early = True
        out: list[Utterance] = []
        if self._silence_run >= self._required_silence():
            self._emit(self._trail_end(), EndReason.SILENCE, out)
            self._reset_idle()
            self.ended_early += len(out)
        return out

    @property
    def options(self) -> VadOptions:
        """The options this segmenter was built with."""
        return self._opts

    @property
    def samples_received(self) -> int:
        """Total number of samples fed so far (including a buffered partial frame)."""
        return self._received

    @property
    def in_speech(self) -> bool:
        """True while an utterance is in progress (triggered and not yet ended)."""
        return self._triggered

    @property
    def tentative(self) -> Utterance | None:
        """The utterance that the endpoint will emit, as soon as its audio is final; else None.

        Once ``trailing_ms`` of unvoiced frames have followed the speech, the audio of the
        utterance in progress can no longer change unless a voiced frame arrives before the
        endpoint (then this goes back to None, and the utterance continues).  The returned
        object equals, sample for sample and with the same ``index``, the one that
        :meth:`feed` will emit (or :meth:`flush`, with ``end_reason`` FLUSH) if no voiced
        frame comes first.  None also when the length cap would cut the utterance first.
        Each offer that speech withdraws makes the next offer of the same utterance (and of
        the part that follows a length cut) wait ``speculation_backoff_ms`` longer.
        Meant for speculative transcription: start decoding ``silence_frames * frame_ms -
        trailing_ms`` before the endpoint, keep the result if the endpoint confirms it.
        Cheap to poll after every :meth:`feed` (cached until it changes).
        """
        if not self._triggered or self._silence_run < self._offer_frames() or self._voiced_end <= self._audio_start:
            return None
        endpoint = self._voiced_end + self._required_silence() * self._fs
        if endpoint - self._audio_start > self._max:
            return None  # the cap is reached before the endpoint: a MAX_LENGTH cut comes instead
        key = (self._next_index, self._audio_start, self._trail_end())
        if self._tentative_cache is None or self._tentative_cache[0] != key:
            utterance = self._build(key[2], EndReason.SILENCE, endpoint, self._next_index)
            if utterance is None:
                return None
            self._tentative_cache = (key, utterance)
        return self._tentative_cache[1]

    def in_progress(self) -> Utterance | None:
        """The utterance in progress as it stands now (its audio so far), or None when not in speech.

        For partial hypotheses: the same ``index``, ``audio_start_sample`` and
        ``speech_start_sample`` as the utterance :meth:`feed` will emit later (unless the length
        cap cuts it first), its samples up to the last whole frame fed, ``end_reason`` FLUSH and
        ``endpoint_sample`` -1.  None also when it would be discarded now (too little speech,
        steady noise).  Builds a new array: call it at a partial's cadence, not per frame.
        """
        if not self._triggered:
            return None
        return self._build(self._end, EndReason.FLUSH, -1, self._next_index, count=False)

    @property
    def closed(self) -> bool:
        """True once :meth:`flush` has been called."""
        return self._closed

    def feed(self, pcm: bytes | np.ndarray) -> list[Utterance]:
        """Feed audio; return the utterances completed by this call, in order.

        Args:
            pcm: either ``bytes``/``bytearray``/``memoryview`` of signed 16-bit little-endian
                mono PCM (even length), or a 1-D int16 ``np.ndarray`` (shape ``(n,)``).  Any
                length is accepted; a trailing partial frame is buffered until more arrives.
                Arrays are copied, so the caller may reuse its buffer.

        Raises:
            UsageError: after :meth:`flush`, for an odd number of bytes, or for an array that
                is not 1-D int16 (or an unsupported type).
        """
        if self._closed:
            raise UsageError("VadSegmenter.feed() called after flush()")
        samples = self._to_int16(pcm)
        if samples.size == 0:
            return []
        self._received += samples.size
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        n_frames = samples.size // self._fs
        cut = n_frames * self._fs
        self._pending = samples[cut:].copy() if cut < samples.size else np.zeros(0, dtype=np.int16)
        out: list[Utterance] = []
        fs = self._fs
        for i in range(n_frames):
            self._process_frame(samples[i * fs : (i + 1) * fs], out)
        return out

    def flush(self) -> list[Utterance]:
        """End the stream; return the utterance(s) completed by it (usually zero or one).

        An utterance in progress is finished with :attr:`EndReason.FLUSH` and includes any
        buffered partial frame (not classified; counted as unvoiced).  It is discarded if it
        has less voiced audio than ``min_speech_ms``.  If it would exceed ``max_speech_s``,
        it is cut as in :meth:`feed` (the first part(s) get :attr:`EndReason.MAX_LENGTH`).
        Afterwards the segmenter is closed.

        Raises:
            UsageError: if called twice.
        """
        if self._closed:
            raise UsageError("VadSegmenter.flush() called twice")
        self._closed = True
        out: list[Utterance] = []
        if self._triggered:
            if self._pending.size:
                self._append(self._pending, False)
                self._cut_to_max(out)
            self._emit(self._trail_end(), EndReason.FLUSH, out)
            self._triggered = False
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames, self._flags = [], []
        self._hist.clear()
        self._hist_flags.clear()
        return out

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _to_int16(pcm: object) -> np.ndarray:
        if isinstance(pcm, (bytes, bytearray, memoryview)):
            raw = bytes(pcm)
            if len(raw) % 2:
                raise UsageError(f"PCM bytes must have an even length (s16le), got {len(raw)} bytes")
            return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
        if isinstance(pcm, np.ndarray):
            if pcm.ndim != 1:
                raise UsageError(f"PCM array must be 1-D (mono), got shape {pcm.shape}")
            if pcm.dtype.kind != "i" or pcm.dtype.itemsize != 2:
                raise UsageError(f"PCM array must have dtype int16, got {pcm.dtype}")
            return np.array(pcm, dtype=np.int16, copy=True)
        raise UsageError(f"PCM must be bytes or a 1-D int16 numpy array, got {type(pcm).__name__}")

    def _process_frame(self, frame: np.ndarray, out: list[Utterance]) -> None:
        near_silent = frame.size == 0 or int(frame.max()) - int(frame.min()) <= self._silence_peak
        self._near_silent_run = self._near_silent_run + 1 if near_silent else 0
        detector_frame = frame if self._agc is None else self._agc.apply(frame, near_silent)
        voiced = bool(self._is_speech(detector_frame.tobytes(), self._rate))  # always called: it adapts to the noise
        if near_silent:
            # near-silence may continue speech (like the detector's hangover), never start it
            voiced = voiced and self._triggered and self._last_audible_voiced and self._near_silent_run < self._silence_run_limit
        else:
            self._last_audible_voiced = voiced
        energy = -1.0  # mean square (int16 units), computed only when needed
        if voiced and self._floor_energy is not None and frame.size == self._fs:
            x = frame.astype(np.float64)
            sum_sq = float(np.dot(x, x))
            energy = sum_sq / x.size
            voiced = sum_sq >= self._floor_energy
        frame_start = self._next_frame_start
        self._next_frame_start += self._fs
        if self._triggered and frame.size:
            if energy < 0:
                x = frame.astype(np.float64)
                energy = float(np.dot(x, x)) / x.size
            if voiced and self._voiced_end - self._audio_start >= self._long_samples and energy <= self._peak_energy * _LONG_SPEECH_QUIET_RATIO:
                voiced = False  # a clean line's pause that the detector calls voiced
            self._peak_energy = max(self._peak_energy, energy)
        if self._triggered:
            if voiced and self._silence_run >= self._offer_frames() and self._offered():
                self._withdrawn += 1  # speech resumed after an offer: the next one waits longer
                self.offers_withdrawn += 1
            self._append(frame, voiced)
            self._silence_run = 0 if voiced else self._silence_run + 1
            if voiced:
                self._early = False  # speech resumed: the sentence was not over
            self._cut_to_max(out)
            if self._silence_run >= self._required_silence():
                if self._early and self._silence_run < self._base_silence():
                    self.ended_early += 1
                self._emit(self._trail_end(), EndReason.SILENCE, out)
                self._reset_idle()
            return

        # Idle: update the history and the trigger window.
        if not self._hist:
            self._hist_start = frame_start
        elif len(self._hist) == self._hist.maxlen:
            self._hist_start += self._fs
        self._hist.append(frame)
        self._hist_flags.append(voiced)
        if len(self._win_flags) == self._window and self._win_flags[0]:
            self._win_voiced -= 1
        self._win_flags.append(voiced)
        self._win_voiced += voiced
        if self._win_voiced >= self._need_voiced:
            self._trigger()
            self._cut_to_max(out)

    def _trigger(self) -> None:
        n = len(self._hist)
        window_first = n - len(self._win_flags)
        first_voiced = next(k for k in range(window_first, n) if self._hist_flags[k])
        speech_start = self._hist_start + first_voiced * self._fs
        audio_start = max(speech_start - self._preroll, self._hist_start)
        k0 = (audio_start - self._hist_start) // self._fs
        self._frames = [self._hist[k] for k in range(k0, n)]
        # Frames before the first voiced frame of the window are pre-roll, never speech.
        self._flags = [k >= first_voiced and self._hist_flags[k] for k in range(k0, n)]
        self._first_frame_start = self._hist_start + k0 * self._fs
        self._audio_start = audio_start
        self._end = self._hist_start + n * self._fs
        self._silence_run = 0  # the frame that triggered is voiced
        self._peak_energy = self._energy_peak(self._frames)
        self._voiced_end = self._end
        self._triggered = True
        self._hist.clear()
        self._hist_flags.clear()
        self._win_flags.clear()
        self._win_voiced = 0

    def _offered(self) -> bool:
        """Whether :attr:`tentative` has offered the utterance as it stands now (read from its
        cache: an offer nobody polled for was never made, and nothing is built or counted here)."""
        cache = self._tentative_cache
        return cache is not None and cache[0] == (self._next_index, self._audio_start, self._trail_end())

    def _offer_frames(self) -> int:
        """Unvoiced frames after the speech before :attr:`tentative` offers the utterance:
        those of ``trailing_ms``, plus ``speculation_backoff_ms`` per offer speech withdrew."""
        return max(1, self._trailing_frames) + self._backoff_frames * self._withdrawn

    def _reset_idle(self) -> None:
        self._withdrawn = 0
        self._triggered = False
        self._early = False
        self._frames, self._flags = [], []
        self._silence_run = 0

    def _append(self, frame: np.ndarray, voiced: bool) -> None:
        self._frames.append(frame)
        self._flags.append(voiced)
        self._end += frame.size
        if voiced:
            self._voiced_end = self._end

    def _frame_bounds(self, k: int) -> tuple[int, int]:
        """Absolute [start, end) of frame k of the current utterance, clipped to its audio."""
        start = self._first_frame_start + k * self._fs
        return max(start, self._audio_start), min(start + self._frames[k].size, self._end)

    def _cut_to_max(self, out: list[Utterance]) -> None:
        """While the utterance exceeds the maximum length, cut it in its longest pause (:meth:`_pause_point`)."""
        while self._end - self._audio_start > self._max:
            limit = self._audio_start + self._max
            lo = limit - int(self._max * _CUT_SEARCH_FRACTION)
            cut = self._pause_point(lo, limit, limit)
            self._emit(cut, EndReason.MAX_LENGTH, out)
            # Carry the rest over as a new utterance that is already in speech.
            k_cut = (cut - self._first_frame_start) // self._fs
            self._frames = self._frames[k_cut:]
            self._flags = self._flags[k_cut:]
            self._first_frame_start += k_cut * self._fs
            self._audio_start = cut
            self._peak_energy = self._energy_peak(self._frames)  # of the part carried over, not of what went
            # _silence_run is unchanged: it counts consecutive unvoiced frames of the stream,
            # and a pause that spans the cut still ends the (new) utterance on time.

    @staticmethod
    def _energy_peak(frames: list[np.ndarray]) -> float:
        """The largest mean square (int16 units) of ``frames``; 0 when there are none."""
        peak = 0.0
        for f in frames:
            if f.size:
                x = f.astype(np.float64)
                peak = max(peak, float(np.dot(x, x)) / x.size)
        return peak

    def _pause_point(self, lo: int, limit: int, default: int) -> int:
        """Where to cut speech at the length cap, among the frames in ``[lo, limit)`` (clipped to
        it); ``default`` when there is none.

        1. The detector found a pause there (a run of unvoiced frames of at least
           :data:`_DETECTED_PAUSE_MS`): the middle of the longest such run (the later on a tie).
        2. Else the quietest stretch of contiguous whole frames spanning
           :data:`_QUIET_SPAN_MS` (5 frames of 30 ms; least mean energy, the later on a tie), cut in the middle
           of its quietest frame.  On a noisy line the detector calls the pauses between
           sentences voiced, or leaves one unvoiced frame in them, and the quietest single
           frame is as often a dip between two syllables (a stop's closure), 1 dB under a pause
           of a second at the noise floor: a cut there splits a word.  A stretch of 150 ms is
           longer than a word's internal dips, and the mean is of energy, not of dB, so that one
           lost packet's zeros inside speech do not make a stretch quiet.
        3. Else (fewer than that many whole frames) the longest unvoiced run, else the quietest
           whole frame.

        Frames in the pre-roll, or so early that the first part would be dropped, are never
        candidates."""
        energies: list[float] = []  # mean square of each whole frame (int16 units); inf for a clipped one
        frames: list[tuple[int, int, bool]] = []
        voiced = 0
        for k in range(len(self._frames)):
            s, e = self._frame_bounds(k)
            if s >= limit:
                break
            enough = voiced >= self._min_voiced + self._fs  # voiced audio before this frame
            if self._flags[k]:
                voiced += e - s
            whole = lo <= s and e <= limit and e - s == self._fs
            s, e = max(s, lo), min(e, limit)
            if not enough or e <= s:
                continue
            x = self._frames[k].astype(np.float64)
            # a frame cut by the window's edges can only be an unvoiced pause
            energies.append(float(np.dot(x, x)) / x.size if whole else math.inf)
            frames.append((s, e, bool(self._flags[k])))
        if not frames:
            return default
        length, cut = self._longest_unvoiced_run(frames)
        if length >= self._detected_pause_frames * self._fs:
            return cut  # the detector found a pause
        span = self._quiet_span_frames
        best, quietest = math.inf, -1
        for k in range(len(frames) - span + 1):  # frames holds consecutive frames of the utterance
            window = energies[k : k + span]
            if math.inf in window:
                continue  # a frame clipped by the window's edges
            mean = sum(window) / span
            if mean <= best:  # ties: the later stretch
                best, quietest = mean, max(range(k, k + span), key=lambda j: (-energies[j], j))
        if quietest >= 0:
            s, e, _ = frames[quietest]
            return (s + e) // 2
        if length > 0:
            return cut
        if min(energies) == math.inf:
            return default
        k = len(energies) - 1 - int(np.argmin(energies[::-1]))  # the quietest whole frame, the later on a tie
        s, e, _ = frames[k]
        return (s + e) // 2

    @staticmethod
    def _longest_unvoiced_run(frames: list[tuple[int, int, bool]]) -> tuple[int, int]:
        """The samples in, and the middle of, the longest run of consecutive unvoiced frames of
        ``frames`` (``(start, end, voiced)``), the later run on a tie; ``(0, -1)`` when there is none."""
        best_len, cut = 0, -1
        run_start = -1
        for s, e, voiced in frames:
            if voiced:
                run_start = -1
                continue
            if run_start < 0:
                run_start = s
            if e - run_start >= best_len:
                best_len, cut = e - run_start, (run_start + e) // 2
        return best_len, cut

    def _base_silence(self) -> int:
        """Unvoiced frames that end the current utterance without :meth:`end_early`: fewer once its speech is long."""
        if self._voiced_end - self._audio_start >= self._long_samples:
            return self._long_silence_frames
        return self._silence_frames

    def _required_silence(self) -> int:
        """Unvoiced frames that end the current utterance (:meth:`_base_silence`, or fewer after :meth:`end_early`)."""
        base = self._base_silence()
        if self._early and self._early_frames is not None:
            return min(base, self._early_frames)
        return base

    def _trail_end(self) -> int:
        """End of the audio of an utterance that ends now in silence: ``trailing_ms`` after its last voiced frame."""
        return max(self._audio_start, min(self._end, self._voiced_end + self._trailing))

    def _build(self, end: int, reason: EndReason, endpoint: int, index: int, *, count: bool = True) -> Utterance | None:
        """The current utterance's audio [audio_start, end), or None if it has too little speech
        or is steady noise (counted in :attr:`steady_discarded` when ``count``)."""
        voiced = 0
        speech_start: int | None = None
        speech_end = 0
        last_k = 0
        for k in range(len(self._frames)):
            s, e = self._frame_bounds(k)
            e = min(e, end)
            if s >= end:
                break
            last_k = k
            if self._flags[k] and e > s:
                voiced += e - s
                if speech_start is None:
                    speech_start = s
                speech_end = e
        if speech_start is None or voiced < self._min_voiced:
            return None
        offset = self._audio_start - self._first_frame_start
        audio = np.concatenate(self._frames[: last_k + 1])[offset : end - self._first_frame_start]
        if self._min_span_db is not None and dynamic_range_db(audio, self._fs) < self._min_span_db:
            if count and (index, self._audio_start) != self._steady_last:  # once each: tentative ones are rebuilt
                self._steady_last = (index, self._audio_start)
                self.steady_discarded += 1
            return None
        audio.setflags(write=False)
        return Utterance(
            index=index,
            audio_start_sample=self._audio_start,
            speech_start_sample=speech_start,
            speech_end_sample=speech_end,
            samples=audio,
            sample_rate_hz=self._rate,
            end_reason=reason,
            endpoint_sample=endpoint,
        )

    def _emit(self, end: int, reason: EndReason, out: list[Utterance]) -> None:
        """Emit the current utterance's audio [audio_start, end) unless it has too little speech.

        Called when the endpoint is decided, so the endpoint is the current stream position.
        """
        utterance = self._build(end, reason, self._end, self._next_index)
        if utterance is not None:
            out.append(utterance)
            self._next_index += 1


_AGC_MIN_LEVEL_DBFS = -75.0
"""No gain while the loudest frame of the window is below this: speech at a whole-file RMS of
-70 dBFS has its loudest 30 ms frames near -60 dBFS, so such a window holds only line noise or
dither, which must not be amplified into "speech"."""


class _LevelNormalizer:
    """Per-frame gain for the detector's copy of the audio (see ``VadOptions.agc_target_dbfs``).

    The level is the largest frame RMS (dBFS) over the last ``agc_window_ms``, kept with a
    monotonic deque (sliding-window maximum, O(1) amortised per frame); near-silent frames
    neither enter the window nor, while it is empty, get any gain.
    """

    _MIN_GAIN_DB = -20.0

    def __init__(self, options: VadOptions) -> None:
        assert options.agc_target_dbfs is not None
        self._target = options.agc_target_dbfs
        self._max_gain = options.agc_max_gain_db
        self._window = max(1, options.agc_window_ms // options.frame_ms)
        self._levels: collections.deque[tuple[int, float]] = collections.deque()  # (frame number, dBFS), decreasing
        self._frame = 0

    def apply(self, frame: np.ndarray, near_silent: bool) -> np.ndarray:
        """The frame scaled by the current gain (int16, same shape), or the frame itself at 0 dB."""
        n = self._frame
        self._frame += 1
        if not near_silent:
            x = frame.astype(np.float64)
            level = 10.0 * math.log10(max(float(np.dot(x, x)) / x.size, 1e-3) / 32768.0**2)
            while self._levels and self._levels[-1][1] <= level:
                self._levels.pop()
            self._levels.append((n, level))
        while self._levels and self._levels[0][0] <= n - self._window:
            self._levels.popleft()
        if not self._levels or self._levels[0][1] < _AGC_MIN_LEVEL_DBFS:
            return frame
        gain_db = min(max(self._target - self._levels[0][1], self._MIN_GAIN_DB), self._max_gain)
        if abs(gain_db) < 0.05:
            return frame
        scaled = np.rint(frame.astype(np.float64) * 10.0 ** (gain_db / 20.0))
        return np.clip(scaled, -32768, 32767).astype(np.int16)
