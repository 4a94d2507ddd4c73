"""The analysis interface: audio + transcript -> an annotation, run in the workers.

An :class:`Analyzer` adds one kind of annotation to a final transcript (sentiment now; speaker,
acoustic features later).  Analyzers are built once per worker process from a picklable
:class:`AnalyzerSpec` (like the ASR engines) and run right after the transcription, off the
event loop.  A stream asks for analyses by name (:attr:`AnalyzerSpec.name`); its results carry
them as ``annotations[name]``.  Nothing below the analyzers (codec, session, backend contract)
knows what an annotation contains: only the analyzer and whoever renders it (a wire adapter,
a sink) do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from whisper_streaming.core.transcript import Transcript
from whisper_streaming.errors import UsageError

__all__ = ["Analyzer", "AnalyzerSpec", "build_analyzers"]


@runtime_checkable
class Analyzer(Protocol):
    """Load once in ``__init__``, then annotate many transcripts.

    An analyzer that needs only the audio may say so with a class attribute
    ``audio_only = True`` (optional; absent means False): the worker then runs it beside the
    transcription, in a thread (both CTranslate2 and PyTorch release the GIL), and passes
    ``transcript=None``.

    ``name``: the analysis name, the key of its annotation.
    """

    name: str

    def analyze(self, audio: np.ndarray, transcript: Transcript) -> Any | None:
        """The annotation of one utterance, or None (nothing to say, e.g. an empty text).

        ``audio``: the utterance, float32, shape ``(n,)``, mono, 16 kHz, in [-1, 1].
        Annotations must be picklable frozen values.

        Raises:
            WhisperStreamingError: the analysis failed on this input (the worker logs it; the
                result goes out without this annotation).
        """
        ...


@dataclass(frozen=True)
class AnalyzerSpec:
    """A picklable recipe: ``factory(options)`` builds the analyzer named ``name`` in a worker."""

    name: str
    factory: Callable[[Any], Analyzer]
    options: Any = None

    def build(self) -> Analyzer:
        return self.factory(self.options)


def build_analyzers(specs: Iterable[AnalyzerSpec]) -> Mapping[str, Analyzer]:
    """Build each spec once; names must be unique.

    Raises:
        UsageError: two specs share a name.
    """
    out: dict[str, Analyzer] = {}
    for spec in specs:
        if spec.name in out:
            raise UsageError(f"two analyzers named {spec.name!r}")
        out[spec.name] = spec.build()
    return out
