"""Telnyx webhook signatures: Ed25519 over ``"{timestamp}|{body}"``.

Telnyx signs each webhook with its private key and sends ``telnyx-signature-ed25519`` (base64
signature) and ``telnyx-timestamp`` (Unix seconds). The signed message is the timestamp, a
``|``, and the raw body. The public key to verify with is shown (base64, 32 raw bytes) in the
Telnyx portal. A timestamp far from now is refused (five minutes by default) so that a captured
webhook cannot be replayed later.

Verification uses the ``cryptography`` package (imported on first use).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING, Any

from providers._signature import body_bytes, header_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "MAX_TIMESTAMP_DIGITS",
    "load_telnyx_public_key",
    "verify_telnyx_signature",
]

DEFAULT_TOLERANCE_SECONDS = 300.0
"""How far (seconds) a webhook's timestamp may be from now."""

MAX_TIMESTAMP_DIGITS = 12
"""Longest ``telnyx-timestamp`` accepted (Unix seconds have 10 digits until the year 2286)."""


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise ImportError(
            "Telnyx signature verification needs the cryptography package: "
            "pip install cryptography"
        ) from exc
    return ed25519


def load_telnyx_public_key(public_key: str | bytes) -> Ed25519PublicKey:
    """Read Telnyx' public key: base64 of the 32 raw bytes (as the portal shows it), the raw
    bytes themselves, or a PEM ``PUBLIC KEY`` block.

    Raises:
        ValueError: Not an Ed25519 public key.
        ImportError: ``cryptography`` is not installed.
    """
    ed25519 = _ed25519()
    if isinstance(public_key, str) and public_key.lstrip().startswith("-----BEGIN"):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        key = load_pem_public_key(public_key.encode())
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("PEM key is not an Ed25519 public key")
        pem_key: Ed25519PublicKey = key
        return pem_key
    if isinstance(public_key, bytes) and len(public_key) == 32:
        raw = public_key
    else:
        try:
            raw = base64.b64decode(public_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("Telnyx public key is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("Telnyx public key must be 32 bytes (Ed25519)")
    result: Ed25519PublicKey = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return result


def verify_telnyx_signature(
    public_key: Ed25519PublicKey | str | bytes,
    payload: bytes | str,
    signature: str | bytes,
    timestamp: str | bytes | None,
    *,
    tolerance_seconds: float | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is Telnyx' signature of this webhook.

    Args:
        public_key: Telnyx' public key (loaded, or as :func:`load_telnyx_public_key` reads it).
        payload: The raw request body, byte for byte as received (bytes, or text as UTF-8).
        signature: The ``telnyx-signature-ed25519`` header (base64, as text or raw bytes).
        timestamp: The ``telnyx-timestamp`` header (Unix seconds, at most
            :data:`MAX_TIMESTAMP_DIGITS` ASCII digits); None fails verification.
        tolerance_seconds: Maximum distance between the timestamp and ``now``; None skips the
            check.
        now: The current Unix time (``time.time()`` when None).

    Returns:
        True only for a valid, fresh signature; malformed input (of any type) gives False.

    Raises:
        ValueError: ``public_key`` is not an Ed25519 public key.
    """
    key = load_telnyx_public_key(public_key) if isinstance(public_key, str | bytes) else public_key
    stamp = header_text(timestamp)
    signature_text = header_text(signature)
    body = body_bytes(payload)
    # A short run of ASCII digits only: int() also takes signs, "_" and non-ASCII digits, and a
    # few hundred digits overflow the float comparison below.
    if stamp is None or len(stamp) > MAX_TIMESTAMP_DIGITS or not stamp.isdigit():
        return False
    if signature_text is None or body is None:
        return False
    try:
        raw_signature = base64.b64decode(signature_text, validate=True)
    except (ValueError, binascii.Error):
        return False
    if tolerance_seconds is not None:
        current = time.time() if now is None else now
        if abs(current - int(stamp)) > tolerance_seconds:
            return False
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(raw_signature, stamp.encode() + b"|" + body)
    except InvalidSignature:
        return False
    return True
