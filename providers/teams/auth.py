"""Checking the JWT that the Bot Framework puts in ``Authorization: Bearer`` on each activity.

Everything that can be checked offline is checked here, against a JWKS the caller supplies:
RS256 signature by a key of the set (selected by ``kid``), issuer, audience (the bot's app id),
expiry and not-before (with clock skew), and optionally the ``serviceurl`` claim against the
activity's ``serviceUrl`` and the key's channel endorsements.

Fetching keys is the caller's job (it is network I/O and needs caching): the Bot Framework
publishes its OpenID metadata at :data:`BOT_FRAMEWORK_OPENID_METADATA_URL`, whose ``jwks_uri``
(currently :data:`BOT_FRAMEWORK_JWKS_URL`) serves the key set. On :class:`TeamsJWTError` with
``unknown_key`` refresh the JWKS once and retry: the keys rotate.

RSA verification uses the ``cryptography`` package, imported when a token is verified.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from providers.errors import ProviderError

__all__ = [
    "BOT_FRAMEWORK_ISSUER",
    "BOT_FRAMEWORK_JWKS_URL",
    "BOT_FRAMEWORK_OPENID_METADATA_URL",
    "TeamsJWTError",
    "verify_teams_jwt",
]

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_OPENID_METADATA_URL = (
    "https://login.botframework.com/v1/.well-known/openidconfiguration"
)
BOT_FRAMEWORK_JWKS_URL = "https://login.botframework.com/v1/.well-known/keys"
# The Bot Framework documents a 5-minute allowance for clock skew.
DEFAULT_LEEWAY = 300.0


class TeamsJWTError(ProviderError):
    """A Bot Framework token was rejected; ``reason`` says why (never contains the token).

    Reasons: ``malformed``, ``unsupported_algorithm``, ``unknown_key``, ``invalid_key``,
    ``bad_signature``, ``wrong_issuer``, ``wrong_audience``, ``expired``, ``not_yet_valid``,
    ``service_url_mismatch``, ``not_endorsed``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"Teams JWT rejected ({reason}): {message}", provider="BotFrameworkTeams")
        self.reason = reason


def _b64url_decode(segment: str) -> bytes:
    if not segment.isascii():
        raise ValueError("non-ASCII base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url_decode(segment))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise TeamsJWTError("malformed", f"{what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TeamsJWTError("malformed", f"{what} is not a JSON object")
    return value


def _b64url_int(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("not a base64url string")
    return int.from_bytes(_b64url_decode(value), "big")


def _public_key(jwk: Mapping[str, Any]) -> Any:
    """The RSA public key of a JWK, from ``n``/``e`` or else the first ``x5c`` certificate."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as exc:  # pragma: no cover - cryptography is installed with the extra
        raise ImportError(
            "verifying Teams tokens needs the cryptography package: pip install cryptography"
        ) from exc
    try:
        if "n" in jwk and "e" in jwk:
            return rsa.RSAPublicNumbers(_b64url_int(jwk["e"]), _b64url_int(jwk["n"])).public_key()
        chain = jwk.get("x5c")
        if isinstance(chain, list) and chain and isinstance(chain[0], str):
            cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
            key = cert.public_key()
            if isinstance(key, rsa.RSAPublicKey):
                return key
    except (ValueError, binascii.Error, TypeError) as exc:
        raise TeamsJWTError("invalid_key", "the signing key in the JWKS is unusable") from exc
    raise TeamsJWTError("invalid_key", "the signing key in the JWKS is not an RSA key")


def _verify_rs256(key: Any, signing_input: bytes, signature: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError) as exc:
        raise TeamsJWTError("bad_signature", "signature does not verify") from exc


def _find_key(jwks: Mapping[str, Any], kid: Any) -> Mapping[str, Any]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    for jwk in keys if isinstance(keys, list) else []:
        if isinstance(jwk, Mapping) and jwk.get("kid") == kid and jwk.get("kty", "RSA") == "RSA":
            return jwk
    raise TeamsJWTError("unknown_key", "no key of the JWKS has the token's kid")


def _number(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TeamsJWTError("malformed", f"claim {name!r} is missing or not a number")
    return float(value)


def verify_teams_jwt(
    token: str,
    *,
    app_id: str,
    jwks: Mapping[str, Any],
    issuer: str = BOT_FRAMEWORK_ISSUER,
    service_url: str | None = None,
    channel_id: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a Bot Framework token and return its claims.

    Args:
        token: The token, or the whole ``Authorization`` header value (``Bearer <token>``).
        app_id: The bot's Microsoft app id (the expected audience).
        jwks: The key set, ``{"keys": [{"kid", "kty": "RSA", "n", "e", ...}]}``.
        issuer: The expected issuer.
        service_url: The activity's ``serviceUrl``; when given, the token's ``serviceurl``
            claim must match it, so a stolen token cannot redirect replies elsewhere.
        channel_id: The activity's ``channelId`` (``msteams``); when given and the key lists
            ``endorsements``, the channel must be among them.
        leeway: Seconds of clock skew tolerated on ``exp`` and ``nbf``.
        now: Current Unix time (defaults to the system clock; for tests).

    Returns:
        The token's claims.

    Raises:
        TeamsJWTError: The token is malformed, unsigned by the set, or its claims do not match.
        ImportError: The ``cryptography`` package is missing.
    """
    if not isinstance(token, str):
        raise TeamsJWTError("malformed", "token is not a string")
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    segments = token.split(".")
    if len(segments) != 3 or not all(segments[:2]):
        raise TeamsJWTError("malformed", "a JWT has three dot-separated segments")
    header = _json_segment(segments[0], "header")
    if header.get("alg") != "RS256":
        raise TeamsJWTError("unsupported_algorithm", "only RS256 tokens are accepted")
    jwk = _find_key(jwks, header.get("kid"))
    if channel_id is not None:
        endorsements = jwk.get("endorsements")
        if isinstance(endorsements, list) and channel_id not in endorsements:
            raise TeamsJWTError("not_endorsed", "the signing key is not endorsed for the channel")
    try:
        signature = _b64url_decode(segments[2])
    except (ValueError, binascii.Error) as exc:
        raise TeamsJWTError("malformed", "signature is not base64url") from exc
    _verify_rs256(_public_key(jwk), f"{segments[0]}.{segments[1]}".encode(), signature)

    # Claims are only trusted (and parsed) once the signature holds.
    claims = _json_segment(segments[1], "payload")
    if claims.get("iss") != issuer:
        raise TeamsJWTError("wrong_issuer", "issuer is not the Bot Framework")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if app_id not in audiences:
        raise TeamsJWTError("wrong_audience", "audience is not this bot's app id")
    current = time.time() if now is None else now
    expires = _number(claims, "exp", required=True)
    if expires is not None and current > expires + leeway:
        raise TeamsJWTError("expired", "token has expired")
    not_before = _number(claims, "nbf", required=False)
    if not_before is not None and current + leeway < not_before:
        raise TeamsJWTError("not_yet_valid", "token is not valid yet")
    if service_url is not None:
        claimed = claims.get("serviceurl") or claims.get("serviceUrl")
        if not isinstance(claimed, str) or claimed.rstrip("/") != service_url.rstrip("/"):
            raise TeamsJWTError("service_url_mismatch", "serviceurl claim does not match")
    return claims
