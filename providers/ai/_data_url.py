"""Splitting ``data:`` URLs (RFC 2397) into a media type and base64 data.

Anthropic and Gemini take inline images as base64 plus a media type, while room events carry
them as ``data:`` URLs; URLs of any other scheme are passed to the vendors by reference.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

__all__ = ["DataURL", "parse_data_url"]


@dataclass(frozen=True, slots=True)
class DataURL:
    """The content of a ``data:`` URL.

    Attributes:
        mime_type: The declared media type without parameters (``""`` when none was declared).
        data: The payload, base64-encoded.
    """

    mime_type: str
    data: str


def parse_data_url(url: str) -> DataURL | None:
    """Parse ``url`` if it is a ``data:`` URL; return None for any other URL.

    The payload is not decoded when it is already base64 (vendors validate it); a
    percent-encoded payload is decoded and re-encoded as base64.

    Raises:
        ValueError: ``url`` starts with ``data:`` but has no ``,`` before its payload.
    """
    if url[:5].lower() != "data:":
        return None
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ValueError("malformed data: URL (no comma)")
    params = [param.strip() for param in header.split(";")]
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    mime_type = params[0].lower()
    if is_base64:
        # Base64 in a URL may be percent-encoded or wrapped; vendors want the bare alphabet.
        data = "".join(unquote(payload).split())
    else:
        data = base64.b64encode(unquote_to_bytes(payload)).decode("ascii")
    return DataURL(mime_type=mime_type, data=data)
