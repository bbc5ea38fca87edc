"""Sinch webhook signatures: base64 HMAC-SHA1 of the raw body with the shared webhook secret
(RoomKit 0.3.0's scheme for Sinch callbacks)."""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["compute_sinch_signature", "verify_sinch_signature"]


def compute_sinch_signature(secret: str, payload: bytes | str) -> str:
    """The base64 HMAC-SHA1 of ``payload`` keyed with ``secret``."""
    body = payload.encode() if isinstance(payload, str) else payload
    digest = hmac.new(secret.encode(), body, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_sinch_signature(secret: str, payload: bytes | str, signature: str) -> bool:
    """Whether ``signature`` is the signature of ``payload`` (constant-time comparison).

    Raises:
        ValueError: ``secret`` is empty.
    """
    if not secret:
        raise ValueError("Sinch webhook secret is not set")
    if not isinstance(signature, str) or not signature:
        return False
    expected = compute_sinch_signature(secret, payload)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
