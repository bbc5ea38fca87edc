"""Reading a reply's text from vendor JSON, and making it storable: no surrogate code points.

A text field must be a string (``str(5)`` or ``"None"`` must never reach a user): null reads as
``""``, any other type is refused (:func:`text_field`).

A vendor's JSON may carry surrogates as ``\\uXXXX`` escapes: a lone one (a broken model or
gateway), or the two halves of one character split across two stream events. Python decodes
both into surrogate code points, which UTF-8 cannot encode, so the room could not record the
reply and it would be lost. At the provider boundary, halves that belong together are joined
and every lone surrogate becomes U+FFFD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers._text import clean_text

__all__ = ["StreamedText", "clean_text", "text_field"]

_HIGH_SURROGATES = ("\ud800", "\udbff")


def text_field(value: Any, name: str) -> str:
    """A string field of a vendor's answer; null reads as ``""``.

    Raises:
        TypeError: The value is neither a string nor null (``name`` says which field).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value


@dataclass
class StreamedText:
    """The text of a streamed reply, cleaned piece by piece.

    A piece ending with the first half of a pair keeps that half back until the next piece, so
    every delta handed out is clean and the deltas joined equal :attr:`text`.
    """

    pieces: list[str] = field(default_factory=list)
    _held: str = ""

    def add(self, piece: str) -> str:
        """Take the next piece; return the clean text it releases (possibly ``""``)."""
        text = self._held + piece
        self._held = ""
        if text and _HIGH_SURROGATES[0] <= text[-1] <= _HIGH_SURROGATES[1]:
            text, self._held = text[:-1], text[-1]
        return self._release(text)

    def flush(self) -> str:
        """At the end of the stream: the clean text still held back (``""`` or U+FFFD)."""
        text, self._held = self._held, ""
        return self._release(text)

    @property
    def text(self) -> str:
        """Everything released so far."""
        return "".join(self.pieces)

    def _release(self, text: str) -> str:
        text = clean_text(text)
        if text:
            self.pieces.append(text)
        return text
