"""The id a vendor gave a message it accepted, when it gave one."""

from __future__ import annotations

import logging

__all__ = ["accepted_id"]

logger = logging.getLogger("roomkit.providers.http")


def accepted_id(vendor: str, value: object, status_code: int, what: str = "message") -> str | None:
    """``value`` if it is the id of the message the vendor accepted (a non-empty string), else
    None with a warning.

    A 2xx answer means the vendor took the message: without an id it is still sent, as
    RoomKit 0.3.0 reported it. Reporting a failure would have the router send it again.
    """
    if isinstance(value, str) and value:
        logger.debug("%s accepted %s %s", vendor, what, value)
        return value
    logger.warning("%s accepted a %s (HTTP %d) without naming its id", vendor, what, status_code)
    return None
