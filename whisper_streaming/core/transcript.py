"""What an engine gives for one utterance: typed segments and the transcript (pure values).

Times are seconds from the start of the utterance audio.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TranscriptWord", "TranscriptSegment", "Transcript"]


@dataclass(frozen=True)
class TranscriptWord:
    """One word of a segment, when word timestamps were asked for (faster-whisper
    ``word_timestamps=True``: cross-attention alignment heads and dynamic time warping, as in
    openai/whisper ``timing.py``).  ``word`` keeps Whisper's leading space; times in seconds
    from the start of the utterance audio; ``probability`` the mean token probability."""

    start_s: float
    end_s: float
    word: str
    probability: float


@dataclass(frozen=True)
class TranscriptSegment:
    """One decoded segment; times in seconds from the start of the utterance audio.
    ``words``: empty unless word timestamps were asked for."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[TranscriptWord, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """The final hypothesis for one utterance.

    ``text`` is the segments' text joined and stripped; empty when every segment was
    judged silence/hallucination.  ``language`` is the code the text was decoded in (ISO
    639-1 as Whisper reports); ``language_probability`` the detector's probability of it
    (1.0 when it was given, not detected).

    Guard counters (:mod:`whisper_streaming.engines.decoding`): ``attempts`` decodes ran;
    ``loops_seen`` of them looped; ``loop_cut``: no decode was loop-free and the repeated tail
    was cut from the text, or the text said a sentence again after itself and was cut to one
    copy (:func:`~whisper_streaming.engines.decoding.find_echo`); ``timed_out``: the time budget stopped the fallbacks;
    ``dropped_no_speech``: a short fragment judged not to be speech (text emptied);
    ``no_speech_screened``: not decoded, the speech screen found no speech in it (music, tones:
    :mod:`whisper_streaming.engines.speech_screen`); ``language_switch_refused``: the detector
    replaced the stream's language, and the decode in the new language was refused for one the
    model trusted more (:func:`whisper_streaming.core.language.prefer_switch`); ``decode_s``:
    seconds spent.
    """

    text: str
    language: str
    language_probability: float
    segments: tuple[TranscriptSegment, ...]
    audio_duration_s: float
    attempts: int = 1
    loops_seen: int = 0
    loop_cut: bool = False
    timed_out: bool = False
    dropped_no_speech: bool = False
    decode_s: float = 0.0
    no_speech_screened: bool = False
    language_switch_refused: bool = False
