"""Sinch webhook signatures: base64 HMAC-SHA1 of the raw body with the shared webhook secret
(RoomKit 0.3.0's scheme for Sinch callbacks)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from providers._signature import body_bytes, header_text

__all__ = ["compute_sinch_signature", "verify_sinch_signature"]


def compute_sinch_signature(secret: str, payload: bytes | str) -> str:
    """The base64 HMAC-SHA1 of ``payload`` keyed with ``secret``."""
    body = payload.encode() if isinstance(payload, str) else payload
    digest = hmac.new(secret.encode(), body, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_sinch_signature(secret: str, payload: bytes | str, signature: str) -> bool:
    """Whether ``signature`` is the signature of ``payload`` (constant-time comparison); a
    malformed signature or payload is False.

    Raises:
        ValueError: ``secret`` is empty.
    """
    if not secret:
        raise ValueError("Sinch webhook secret is not set")
    body = body_bytes(payload)
    text = header_text(signature)
    if body is None or text is None:
        return False
    expected = compute_sinch_signature(secret, body)
    return hmac.compare_digest(expected.encode(), text.encode())
