"""Whether a URL has one of some schemes: the one test of it the models and providers share.

A scheme is case-insensitive (RFC 3986): ``HTTPS://`` is as good as ``https://``. Compared
case-sensitively, a vendor's upper-case URL was refused, and a picture-only message recorded
as an empty text.
"""

from __future__ import annotations

__all__ = ["HTTP_SCHEMES", "has_scheme"]

HTTP_SCHEMES = ("http://", "https://")


def has_scheme(url: str, schemes: tuple[str, ...] = HTTP_SCHEMES) -> bool:
    """Whether ``url`` starts with one of ``schemes`` (lower-case, with their ``:``/``://``),
    in any case."""
    longest = max(len(scheme) for scheme in schemes)
    return url[:longest].lower().startswith(schemes)
