"""Splitting ``data:`` URLs (RFC 2397) into a media type and base64 data.

Anthropic and Gemini take inline images as base64 plus a media type, while room events carry
them as ``data:`` URLs; URLs of any other scheme are passed to the vendors by reference.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

__all__ = ["DataURL", "parse_data_url"]

_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
# The URL-safe alphabet carries the same bytes; vendors take the standard one only.
_URL_SAFE = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class DataURL:
    """The content of a ``data:`` URL.

    Attributes:
        mime_type: The declared media type without parameters (``""`` when none was declared).
        data: The payload, base64-encoded (standard alphabet, padded).
    """

    mime_type: str
    data: str


def parse_data_url(url: str) -> DataURL | None:
    """Parse ``url`` if it is a ``data:`` URL; return None for any other URL.

    A base64 payload is checked but not decoded (vendors decode it); a percent-encoded payload
    is decoded and re-encoded as base64.

    Raises:
        ValueError: ``url`` starts with ``data:`` but has no ``,`` before its payload, an empty
            payload, or a base64 payload that is not base64. A vendor refuses the whole request
            for such an image, so callers must not send it as one.
    """
    if url[:5].lower() != "data:":
        return None
    global _last_parsed
    last = _last_parsed
    if last is not None and last[0] is url:
        return last[1]
    parsed = _parse(url)
    _last_parsed = (url, parsed)
    return parsed


# The data: URL parsed last, by identity, and what it gave. ``iter_parts`` checks an image's
# URL and the vendor mapping then reads it, one right after the other: parsing megabytes of
# base64 once serves both. One entry: no more than one image is held past its request.
_last_parsed: tuple[str, DataURL] | None = None


def _parse(url: str) -> DataURL:
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ValueError("malformed data: URL (no comma)")
    params = [param.strip() for param in header.split(";")]
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    mime_type = params[0].lower()
    if is_base64:
        data = _base64_payload(payload)
    else:
        data = base64.b64encode(unquote_to_bytes(payload)).decode("ascii")
    if not data:
        raise ValueError("malformed data: URL (empty payload)")
    return DataURL(mime_type=mime_type, data=data)


def _base64_payload(payload: str) -> str:
    # Base64 in a URL may be percent-encoded, wrapped, URL-safe or unpadded; vendors want the
    # bare standard alphabet, padded.
    data = "".join(unquote(payload).split()).translate(_URL_SAFE).rstrip("=")
    if not _BASE64.fullmatch(data) or len(data) % 4 == 1:
        raise ValueError("malformed data: URL (invalid base64)")
    return data + "=" * (-len(data) % 4)
