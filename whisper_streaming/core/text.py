"""Text clean-up shared by every door (pure)."""

from __future__ import annotations

__all__ = ["is_control", "is_unsafe_in_ids", "UNSAFE_IN_IDS", "sanitize_text"]


def is_control(ch: str) -> bool:
    """C0 and C1 control characters (and DEL)."""
    o = ord(ch)
    return o < 0x20 or 0x7F <= o < 0xA0


_LINE_BREAKS = "\u2028\u2029"

UNSAFE_IN_IDS = frozenset(
    "\u2028\u2029"  # line and paragraph separators: line breaks to many log and JSON-lines readers
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi controls (Unicode UAX #9)
)
"""Characters an identifier must not contain besides control characters: they break lines or
reorder the text around them when the id is printed (the "Trojan Source" bidi overrides,
CVE-2021-42574)."""


def is_unsafe_in_ids(ch: str) -> bool:
    """A control character, a line or paragraph separator, or a bidi control."""
    return is_control(ch) or ch in UNSAFE_IN_IDS


def sanitize_text(text: str) -> str:
    """Result text with tabs, newlines, other control characters and line separators as spaces."""
    if text.isprintable():
        return text
    return "".join(" " if is_control(ch) or ch in _LINE_BREAKS else ch for ch in text)
