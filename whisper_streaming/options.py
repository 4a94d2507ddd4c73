"""Per-session stream options negotiated with ``%o`` / ``%O`` (pure; no I/O).

A client that wants more than the original protocol sends ``%o`` after ``%u`` and outside a
stream; the options apply to every following stream of the connection.  Data is UTF-8
``key=value`` pairs separated by ``;`` (``sentiment=1``).  The server answers ``%O`` with the
options it accepted and their *effective* values in the same form (``sentiment=0`` when the
server cannot do sentiment).  Unknown keys are ignored and left out of ``%O``, so a newer client
can tell what an older server supports.

Adding an option: add a field to :class:`StreamOptions`
and an :class:`OptionSpec` to :data:`OPTIONS`; the codec, the session and the client pick it up.

Errors are :class:`~whisper_streaming.errors.RemoteProtocolError` with reason ``BAD_OPTION``
(the server sends it in ``%E``): a malformed pair (from :func:`parse_pairs`, in the codec) or an
invalid value for a known key (from :func:`negotiate`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import RemoteProtocolError

__all__ = [
    "StreamOptions",
    "OptionSpec",
    "OPTIONS",
    "OptionPairs",
    "EffectivePolicy",
    "parse_pairs",
    "format_pairs",
    "negotiate",
    "encode_value",
    "decode_accepted",
]

OptionPairs = tuple[tuple[str, str], ...]
"""``key=value`` pairs in the order they were sent."""

EffectivePolicy = Mapping[str, Callable[[Any], Any]]
"""Per key, what the server makes of a requested (validated) value: e.g. ``sentiment`` -> always
False on a server without a sentiment engine.  Keys without a policy keep the requested value."""

_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
_BAD_VALUE_CHARS = re.compile(r"[;=\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StreamOptions:
    """The options in force for a stream (captured at ``%b``).

    ``sentiment``: each ``%R`` carries a sentiment field and ``%S`` precedes ``%F``.
    ``sample_rate``: the Hz of the stream's ``%s`` audio (8000 or 16000).
    ``encoding``: the encoding of the stream's ``%s`` audio (``pcm_s16le``, ``mulaw``, ``alaw``).
    """

    sentiment: bool = False
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"


def _parse_bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return text == "1"


def _format_bool(value: Any) -> str:
    return "1" if value else "0"


_SAMPLE_RATES = (8000, 16000)
_ENCODINGS = ("pcm_s16le", "mulaw", "alaw")


def _parse_sample_rate(text: str) -> int:
    if text not in {str(r) for r in _SAMPLE_RATES}:
        raise ValueError(f"must be one of {', '.join(map(str, _SAMPLE_RATES))}")
    return int(text)


def _parse_encoding(text: str) -> str:
    if text not in _ENCODINGS:
        raise ValueError(f"must be one of {', '.join(_ENCODINGS)}")
    return text


@dataclass(frozen=True)
class OptionSpec:
    """One known key: the :class:`StreamOptions` field it sets and its wire value syntax.

    ``parse`` raises ``ValueError`` for an invalid value; ``format`` is its inverse.
    """

    key: str
    field: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]


OPTIONS: dict[str, OptionSpec] = {
    "sentiment": OptionSpec("sentiment", "sentiment", _parse_bool, _format_bool),
    "sample_rate": OptionSpec("sample_rate", "sample_rate", _parse_sample_rate, str),
    "encoding": OptionSpec("encoding", "encoding", _parse_encoding, str),
}
"""Registry of the keys this server understands."""


def _bad(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError("BAD_OPTION", detail)


def parse_pairs(text: str) -> OptionPairs:
    """``"a=1;b=2"`` -> ``(("a", "1"), ("b", "2"))``; ``""`` -> ``()``.

    Syntax only (known or not): a key is ``[a-z][a-z0-9_]*`` (at most 32 characters), a value
    any text without ``;``, ``=`` or control characters (it may be empty); no empty item, no
    key twice.

    Raises:
        RemoteProtocolError: ``BAD_OPTION``.
    """
    if text == "":
        return ()
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key):
            raise _bad(f"malformed option {item[:40]!r} (expected key=value)")
        if _BAD_VALUE_CHARS.search(value):
            raise _bad(f"option {key}: value contains ';', '=' or a control character")
        if key in seen:
            raise _bad(f"option {key} given twice")
        seen.add(key)
        pairs.append((key, value))
    return tuple(pairs)


def format_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """Inverse of :func:`parse_pairs` (does not validate)."""
    return ";".join(f"{k}={v}" for k, v in pairs)


def negotiate(current: StreamOptions, pairs: OptionPairs, policy: EffectivePolicy | None = None) -> tuple[StreamOptions, OptionPairs]:
    """Apply the client's ``pairs`` to ``current``.

    Returns the new options and the ``%O`` answer: each known key with its effective value
    (after ``policy``), in the order sent; unknown keys are left out.

    Raises:
        RemoteProtocolError: ``BAD_OPTION`` for an invalid value of a known key (nothing applied).
    """
    changes: dict[str, Any] = {}
    accepted: list[tuple[str, str]] = []
    for key, text in pairs:
        spec = OPTIONS.get(key)
        if spec is None:
            continue
        try:
            value = spec.parse(text)
        except ValueError as exc:
            raise _bad(f"option {key}={text[:20]!r}: {exc}") from None
        if policy is not None and key in policy:
            value = policy[key](value)
        changes[spec.field] = value
        accepted.append((key, spec.format(value)))
    return replace(current, **changes), tuple(accepted)


def encode_value(key: str, value: Any) -> str:
    """A client-side value -> wire text: known keys through their spec, others: bools as 0/1, else ``str``."""
    spec = OPTIONS.get(key)
    if spec is not None:
        return spec.format(value)
    return _format_bool(value) if isinstance(value, bool) else str(value)


def decode_accepted(pairs: OptionPairs) -> dict[str, Any]:
    """``%O`` pairs -> ``{key: value}``, typed for known keys (``sentiment`` -> bool), text otherwise."""
    out: dict[str, Any] = {}
    for key, text in pairs:
        spec = OPTIONS.get(key)
        try:
            out[key] = spec.parse(text) if spec is not None else text
        except ValueError:
            out[key] = text
    return out
