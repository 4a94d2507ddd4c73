"""Text clean-up shared by every door (pure)."""

from __future__ import annotations

__all__ = ["is_control", "sanitize_text"]


def is_control(ch: str) -> bool:
    """C0 and C1 control characters (and DEL)."""
    o = ord(ch)
    return o < 0x20 or 0x7F <= o < 0xA0


_LINE_BREAKS = "\u2028\u2029"


def sanitize_text(text: str) -> str:
    """Result text with tabs, newlines, other control characters and line separators as spaces."""
    if text.isprintable():
        return text
    return "".join(" " if is_control(ch) or ch in _LINE_BREAKS else ch for ch in text)
