"""What a batch request asks for (a pure value; the HTTP routes and the CLI build it)."""

from __future__ import annotations

from dataclasses import dataclass

from whisper_streaming.errors import UsageError

__all__ = ["BatchRequest", "MAX_SPEAKERS"]

MAX_SPEAKERS = 16
"""The most speakers diarization looks for (and the largest ``num_speakers`` accepted)."""


@dataclass(frozen=True)
class BatchRequest:
    """One file's analysis options.

    ``language``: ISO 639-1 code, None to detect once on the file's first minute of speech;
    ``prompt``: Whisper's ``initial_prompt`` for every chunk; ``temperature``: one decoding
    temperature instead of the fallback ladder (None: the server's ladder); ``word_timestamps``:
    words with times in every segment; ``diarize``: who spoke when (``num_speakers`` forces the
    count); ``features``: acoustic features per segment.

    Raises:
        UsageError: a value out of range (``temperature`` outside [0, 1], ``num_speakers``
            outside [1, :data:`MAX_SPEAKERS`], ``num_speakers`` without ``diarize``).
    """

    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    word_timestamps: bool = False
    diarize: bool = False
    num_speakers: int | None = None
    features: bool = False

    def __post_init__(self) -> None:
        if self.temperature is not None and not 0.0 <= self.temperature <= 1.0:
            raise UsageError(f"temperature must be between 0 and 1, not {self.temperature}")
        if self.num_speakers is not None:
            if not self.diarize:
                raise UsageError("num_speakers needs diarize")
            if not 1 <= self.num_speakers <= MAX_SPEAKERS:
                raise UsageError(f"num_speakers must be between 1 and {MAX_SPEAKERS}, not {self.num_speakers}")
