"""Twilio webhook signatures (``X-Twilio-Signature``).

Twilio signs every webhook with the account's auth token: HMAC-SHA1 over the full URL it called
(scheme, host, path and query) followed by each POST parameter's name and value, parameters
sorted by name, then base64. A JSON body is not a parameter list: Twilio then adds a
``bodySHA256`` query parameter (hex SHA-256 of the body) to the signed URL, and the body must hash
to it.

Twilio may have signed the URL with or without the scheme's default port (``:443`` /
``:80``), depending on how it was configured, so both spellings are tried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from providers._signature import body_bytes, header_text

__all__ = ["compute_twilio_signature", "verify_twilio_signature"]

_DEFAULT_PORTS = {"https": 443, "http": 80}


def compute_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, Any] | Iterable[tuple[str, str]] = ()
) -> str:
    """The signature Twilio sends for a request to ``url`` with form ``params``.

    Args:
        auth_token: The account's auth token.
        url: The exact URL Twilio called.
        params: POST parameters: a mapping (a list value is a repeated field) or
            ``(name, value)`` pairs.

    Returns:
        The base64 HMAC-SHA1.
    """
    data = url + "".join(name + value for name, value in sorted(_pairs(params)))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(
    auth_token: str,
    url: str,
    payload: bytes | str | Mapping[str, Any],
    signature: str,
) -> bool:
    """Whether ``signature`` is Twilio's for this request. Never raises on bad input: a value
    of the wrong type or shape is False.

    Args:
        auth_token: The account's auth token.
        url: The exact URL Twilio called (including its query string), as text or as a web
            framework's URL object (``request.url``), whose text is taken.
        payload: The raw body (form-encoded, or JSON when the URL has ``bodySHA256``), as
            bytes or text, or the already decoded form fields.
        signature: The ``X-Twilio-Signature`` header.
    """
    signature_text = header_text(signature)
    if not auth_token or not isinstance(auth_token, str) or signature_text is None:
        return False
    if not isinstance(url, str):
        # A framework's URL object (httpx.URL, Starlette's): it raised AttributeError deep
        # in urlsplit, answered as a server error to a genuine webhook.
        url = url.decode("utf-8", "replace") if isinstance(url, bytes) else str(url)
    try:
        query = parse_qs(urlsplit(url).query)
        body_hash = query.get("bodySHA256")
        raw = body_bytes(payload)
        if body_hash:
            if raw is None:
                return False
            if not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), body_hash[0].lower()):
                return False
            params: list[tuple[str, str]] = []
        elif isinstance(payload, Mapping):
            params = _pairs(payload)
        elif raw is not None:
            params = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        else:
            return False
        return any(
            hmac.compare_digest(
                compute_twilio_signature(auth_token, candidate, params), signature_text
            )
            for candidate in _url_variants(url)
        )
    except (ValueError, TypeError, UnicodeError):
        return False


def _pairs(params: Mapping[str, Any] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if not isinstance(params, Mapping):
        return [(str(name), str(value)) for name, value in params]
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((str(name), "" if item is None else str(item)) for item in values)
    return pairs


def _url_variants(url: str) -> list[str]:
    """``url`` as given, plus with the default port removed or added."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    variants = [url]
    if default is None or not parts.hostname:
        return variants
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    elif parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    return variants
