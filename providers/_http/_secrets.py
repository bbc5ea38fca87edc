"""Credentials in vendor calls: reading them, sending them, and masking them in messages."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

from pydantic import SecretStr

__all__ = ["MAX_MESSAGE", "bearer", "loggable_url", "redact", "secret_value", "shorten"]

MAX_MESSAGE = 300
"""Longest vendor message kept: a vendor echoing a large request body must not flood logs."""


def secret_value(secret: SecretStr | str) -> str:
    """The plain value of a secret (configs hold ``SecretStr``; helpers also accept ``str``)."""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def bearer(token: SecretStr | str) -> dict[str, str]:
    """The ``Authorization: Bearer`` header for ``token``."""
    return {"Authorization": f"Bearer {secret_value(token)}"}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``, in each form a vendor may
    echo it in (see :func:`_echoed_forms`): every form of every secret, longest first (a
    secret inside another, masked first, left the rest of the longer one in clear)."""
    forms = {form for secret in secrets if secret for form in _echoed_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _echoed_forms(secret: str) -> list[str]:
    """``secret`` as it was sent, and so as a vendor's error may echo it: as is,
    URL-encoded (a form field, a query string) and in base64 (a Basic ``Authorization``
    header); longest first, so that no form is left half masked.

    Also the secret without surrounding whitespace and its escaped forms (``repr`` of the
    text and of its UTF-8 bytes): a key read from a file with its trailing newline made h11
    refuse the header with ``Illegal header value b'Bearer KEY\\n'``, a text holding neither
    the key as given (with a real newline) nor any encoding of it, so the key went out in
    clear in results and logs.
    """
    stripped = secret.strip()
    plain = {secret, stripped} - {""}
    forms = {
        form
        for value in plain
        for form in (
            value,
            quote(value, safe=""),
            quote_plus(value),
            base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii"),
            repr(value)[1:-1],
            repr(value.encode("utf-8", "surrogatepass"))[2:-1],
        )
    }
    return sorted(forms, key=len, reverse=True)


def shorten(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` masked (see :func:`redact`), cut to :data:`MAX_MESSAGE`
    characters."""
    # Masked before shortening: a cut could otherwise leave half a key unmasked.
    text = redact(text, secrets)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


_USERINFO = re.compile(r"^[^/?#@]*@")


def loggable_url(url: str, *, with_path: bool = True) -> str:
    """``url`` as it may be logged: without its userinfo (``user:password@``), query and
    fragment; only its scheme and host when ``with_path`` is false (a webhook URL's path may
    be its token, as Slack's ``/services/T0/B0/TOKEN`` is).

    Cutting only the query left ``https://bot:PASSWORD@hooks.example/in`` and an AI
    ``base_url`` with credentials in clear in the warnings of failed calls.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # an invalid IPv6 host: nothing of it is worth the risk
        return "<invalid URL>"
    if not parts.netloc:  # no scheme ("user:pw@host/x"): the host is at the start of the path
        path = _USERINFO.sub("", parts.path)
        return path if with_path else path.split("/", 1)[0]
    host = parts.netloc.rpartition("@")[2]
    base = f"{parts.scheme}://{host}" if parts.scheme else host
    return base + parts.path if with_path else base
