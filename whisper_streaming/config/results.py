"""The ``results`` section: where final results go besides the client (JSONL log, webhook)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, Field, StrictInt, field_validator

from whisper_streaming.config.fields import STRICT_MODEL_CONFIG, FiniteFloat, NonEmptyStr, not_blank
from whisper_streaming.errors import UsageError

__all__ = ["ResultsConfig"]


class ResultsConfig(BaseModel):
    """Where final results go besides the client."""

    model_config = STRICT_MODEL_CONFIG

    jsonl_path: Optional[NonEmptyStr] = None
    """Append one JSON line per final result to this file (``None``: no log)."""

    @field_validator("jsonl_path")
    @classmethod
    def _check_path(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value if value is None else not_blank(value)

    webhook_url: Optional[NonEmptyStr] = None
    """POST one JSON body per final result and one per session end (an AudioSocket call's hangup), from every door, here (``None``: off)."""

    webhook_timeout_s: Annotated[FiniteFloat, Field(gt=0, le=300)] = 5.0
    """Seconds one webhook POST may take."""

    webhook_max_retries: Annotated[StrictInt, Field(ge=0, le=100)] = 3
    """Retries of a failed webhook POST (with backoff) before the body is given up."""

    @field_validator("webhook_url")
    @classmethod
    def _check_url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            from whisper_streaming.sinks.webhook import parse_url  # lazy: HTTP client only when configured

            try:
                parse_url(value)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
        return value
