"""Whether a URL is an http(s) one: the one test of it the models and providers share.

A scheme is case-insensitive (RFC 3986): ``HTTPS://`` is as good as ``https://``. Compared
case-sensitively, a vendor's upper-case URL was refused, and a picture-only message recorded
as an empty text.
"""

from __future__ import annotations

__all__ = ["HTTP_SCHEMES", "is_http_url"]

HTTP_SCHEMES = ("http://", "https://")


def is_http_url(url: str) -> bool:
    """Whether ``url`` starts with ``http://`` or ``https://``, in any case."""
    return url[:8].lower().startswith(HTTP_SCHEMES)
