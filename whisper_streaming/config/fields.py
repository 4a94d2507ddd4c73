"""Building blocks shared by the configuration's section models.

Annotated field types, the model configuration every section uses (strict, frozen, unknown
keys forbidden) and small validation helpers.  They are public so that each section module
(``audio``, ``network``, ``model``, ...) and the loader can import them.
"""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import AllowInfNan, ConfigDict, Field, Strict, StrictStr

__all__ = [
    "existing_file",
    "FiniteFloat",
    "UnitFloat",
    "NonEmptyStr",
    "LANGUAGE_CODE_RE",
    "STRICT_MODEL_CONFIG",
    "not_blank",
]

#: A finite float that also accepts ints but never strings or booleans.
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
#: A finite float in [0, 1].
UnitFloat = Annotated[FiniteFloat, Field(ge=0.0, le=1.0)]
#: A string of at least one character (no coercion from other types).
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]

#: Shape of a language code: 2-3 lowercase ASCII letters (``"en"``, ``"ko"``, ``"yue"``).
LANGUAGE_CODE_RE = re.compile(r"[a-z]{2,3}")

#: Model configuration of every section and of the whole configuration: unknown keys are
#: errors, instances are immutable, and defaults are validated too.
STRICT_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def not_blank(value: str) -> str:
    """Return ``value`` unchanged; raise ``ValueError("must not be blank")`` if it is only whitespace."""
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def existing_file(value: str | None) -> str | None:
    """Validator body for a path that must name an existing file (``None`` passes).

    Raises:
        ValueError: the path contains NUL, or no file is there.
    """
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not os.path.isfile(value):
        raise ValueError(f"no such file: {value!r}")
    return value
