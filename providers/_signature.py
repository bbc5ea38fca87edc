"""Webhook signature helpers: the raw body as bytes, header values as text, and HMAC-SHA256 hex
signatures of webhook bodies (RoomKit's HTTP webhooks, Meta's ``X-Hub-Signature-256``).

Every vendor's ``verify_*`` function answers False for malformed input instead of raising: a
webhook endpoint reads these values straight from an untrusted request, and a crash there is a
500 an attacker can trigger at will. Only a missing *secret* raises, because that is the
caller's misconfiguration, and quietly comparing against an empty key would accept forgeries.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import SecretStr

from providers._http import secret_value

__all__ = ["body_bytes", "header_text", "hmac_sha256_hex", "verify_hmac_sha256_hex"]


def body_bytes(payload: Any) -> bytes | None:
    """The raw body to check a signature against: bytes-like values as they are, ``str`` as
    UTF-8; None for anything else (including text that UTF-8 cannot encode)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        try:
            return payload.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no request body holds them
            return None
    return None


def header_text(value: Any) -> str | None:
    """A header value as ASCII text, stripped (frameworks hand headers over as ``str`` or as
    raw bytes); None when it is neither, not ASCII, or empty."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value.isascii():
        return None
    return value.strip() or None


def hmac_sha256_hex(secret: SecretStr | str | bytes, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    key = secret if isinstance(secret, bytes) else secret_value(secret).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_hmac_sha256_hex(
    secret: SecretStr | str | bytes, body: bytes | str, signature: str | None, *, prefix: str = ""
) -> bool:
    """Whether ``signature`` (``prefix`` + hex digest) is the HMAC-SHA256 of ``body``.

    Compares in constant time; a missing, malformed or wrongly prefixed signature, or a body
    that is neither bytes nor text, is False.

    Raises:
        ValueError: ``secret`` is empty (or None): anyone can compute an HMAC with an empty
            key, so it would make forged signatures verify.
    """
    if secret is None or not (secret if isinstance(secret, bytes) else secret_value(secret)):
        raise ValueError("webhook secret is not set")
    raw = body_bytes(body)
    text = header_text(signature)
    if raw is None or text is None:
        return False
    if prefix:
        if not text.lower().startswith(prefix.lower()):
            return False
        text = text[len(prefix) :]
    expected = hmac_sha256_hex(secret, raw)
    return hmac.compare_digest(expected.encode(), text.lower().encode())
