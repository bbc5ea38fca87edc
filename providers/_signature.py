"""HMAC-SHA256 hex signatures of webhook bodies (RoomKit's HTTP webhooks, Meta's
``X-Hub-Signature-256``)."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from providers._http import secret_value

__all__ = ["hmac_sha256_hex", "verify_hmac_sha256_hex"]


def hmac_sha256_hex(secret: SecretStr | str | bytes, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    key = secret if isinstance(secret, bytes) else secret_value(secret).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_hmac_sha256_hex(
    secret: SecretStr | str | bytes, body: bytes, signature: str | None, *, prefix: str = ""
) -> bool:
    """Whether ``signature`` (``prefix`` + hex digest) is the HMAC-SHA256 of ``body``.

    Compares in constant time; a missing, malformed or wrongly prefixed signature is False.
    """
    if not signature or not isinstance(signature, str) or not signature.isascii():
        return False
    signature = signature.strip()
    if prefix:
        if not signature.lower().startswith(prefix.lower()):
            return False
        signature = signature[len(prefix) :]
    expected = hmac_sha256_hex(secret, body)
    return hmac.compare_digest(expected.encode(), signature.lower().encode())
