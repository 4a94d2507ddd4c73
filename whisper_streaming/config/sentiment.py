"""The ``sentiment`` section: sentiment of each final result."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, Field, StrictBool, StrictStr, ValidationInfo, field_validator

from whisper_streaming.config.fields import (
    LANGUAGE_CODE_RE,
    STRICT_MODEL_CONFIG,
    FiniteFloat,
    NonEmptyStr,
    not_blank,
)

__all__ = ["SentimentConfig"]


class SentimentConfig(BaseModel):
    """Sentiment of each final result (``%R`` field, ``%S`` summary); see ``whisper_streaming.analyzers.sentiment``."""

    model_config = STRICT_MODEL_CONFIG

    enabled: StrictBool = False
    """Server-wide default for sessions; a client can opt in (or out) with ``%o sentiment=1``."""

    engine: Literal["vader", "transformers", "none"] = "vader"
    """``vader`` (English lexicon, offline), ``transformers`` (a Hugging Face text-classification
    model), or ``none`` (no engine: clients' opt-in is answered ``sentiment=0``)."""

    model: NonEmptyStr = "distilbert-base-uncased-finetuned-sst-2-english"
    """``transformers`` only: a model name (cache or Hub) or a local ``save_pretrained`` directory."""

    languages: Optional[Annotated[tuple[StrictStr, ...], Field(min_length=1)]] = None
    """Language codes the engine supports; others get ``sentiment=unsupported``.  ``None``: the
    engine's default (vader: en; transformers: en for the default model, else any language)."""

    neutral_threshold: Annotated[FiniteFloat, Field(gt=0.0, lt=1.0)] = 0.05
    """``vader``: |compound| below this is neutral (0.05, as the vaderSentiment README recommends)."""

    @field_validator("engine")
    @classmethod
    def _check_engine(cls, value: str, info: ValidationInfo) -> str:
        if value == "none" and info.data.get("enabled"):
            raise ValueError("enabled: true needs an engine (vader or transformers), got none")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        return not_blank(value)

    @field_validator("languages")
    @classmethod
    def _check_languages(cls, value: Optional[tuple[str, ...]]) -> Optional[tuple[str, ...]]:
        for code in value or ():
            if not LANGUAGE_CODE_RE.fullmatch(code):
                raise ValueError(f"must be 2-3 letter lowercase language codes such as 'en' or 'ko', got {code!r}")
        return value
