"""Server URLs with their credentials hidden, for messages (no NATS client needed: the CLI
says URLs before it knows NATS support is installed)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["redacted"]


def redacted(servers: str | Sequence[str]) -> str:
    """Server URLs with their credentials hidden (``nats://user:***@host:port``), for messages.

    Errors and warnings end up in terminals, CI logs and bug reports: a password given in a URL
    must not. A user without a password is a token to NATS, so it is hidden too. Written for
    what a user may type, not only valid URLs: several servers joined by commas, no scheme, a
    password with ``/``, ``?`` or ``@`` in it.
    """
    pieces = [servers] if isinstance(servers, str) else list(servers)
    # A list may hold a comma-separated string too: split as one string is.
    given = [url for piece in pieces for url in _urls_of(piece)]
    return ", ".join(_redacted_one(url.strip()) for url in given)


def _urls_of(text: str) -> list[str]:
    """The URLs of a comma-separated list; a piece without a scheme belongs to the one before
    it (a password with a comma in it must not be cut where its second half would show)."""
    urls: list[str] = []
    for piece in text.split(","):
        if urls and "://" not in piece.partition("@")[0]:
            urls[-1] += "," + piece
        else:
            urls.append(piece)
    return urls


def _redacted_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    hidden = f"{user}:***" if has_password else "***"
    return f"{scheme}{sep}{hidden}@{host}"
