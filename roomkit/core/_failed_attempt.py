"""What a failed delivery attempt says, read from the provider's answer: whether trying the
same call again may succeed, how long the vendor asked to be left alone, and whether the
failure is the channel's (its circuit breaker counts it) or this message's alone.

The HTTP providers describe each failure in ``ProviderResult.metadata`` (``retryable``,
``retry_after``, ``status_code``; see ``providers._http``). A failure that says nothing (a
channel of an app's own, 0.3.0's providers) is retried, and counted by the breaker, as every
failure was: an exception's own ``retryable`` attribute is not read, since a
``ProviderError``'s is False unless its raiser said otherwise (0.3.0 retried them all). Its
``retry_after``, when set, is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

from roomkit.models.delivery import ProviderResult

__all__ = ["Health", "channel_health", "retry_after", "retryable"]

# Refused by the provider before it called its vendor: nothing about this message will change
# (a Teams conversation whose reference was never saved, a ``data:`` image a vendor cannot
# fetch). Retried, and counted by the breaker, a few such rooms shut the channel for all.
_REFUSED_UNSENT = frozenset(
    {
        "missing_recipient",
        "empty_message",
        "unsupported_media_url",
        "conversation_reference_not_found",
        "invalid_service_url",
    }
)
# Statuses of a refusal that holds for every message of the channel (its credentials, its
# proxy, its vendor throttling it): counted by the breaker like an outage.
_CHANNEL_WIDE_STATUSES = frozenset({401, 403, 407, 429})


class Health(Enum):
    """What a failed attempt says of its channel, for its circuit breaker."""

    FAILING = "failing"  # a failure of the channel (an outage, a timeout, bad credentials)
    ANSWERING = "answering"  # the vendor answered, refusing this message alone (a bad number)
    UNKNOWN = "unknown"  # nothing was called (the message had no recipient)


def _details(error: BaseException) -> tuple[str | None, Mapping[str, Any]]:
    result = getattr(error, "provider_result", None)
    if isinstance(result, ProviderResult):
        return result.error, result.metadata
    return None, {}


def retryable(error: BaseException) -> bool:
    """Whether the same call may succeed later: False only when the failure says so (the
    provider's ``retryable``), or when the provider refused the message without calling its
    vendor. A 400 for a bad number was sent again at every retry."""
    code, metadata = _details(error)
    if code in _REFUSED_UNSENT:
        return False
    return metadata.get("retryable") is not False


def retry_after(error: BaseException) -> float | None:
    """Seconds the vendor asked to wait before the next call (a 429's ``Retry-After``), if it
    said so."""
    _, metadata = _details(error)
    value = metadata.get("retry_after", getattr(error, "retry_after", None))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int past any float: longer than any wait
        return math.inf
    if math.isnan(seconds) or seconds <= 0:
        return None
    return seconds  # infinity included: longer than any policy waits, so not retried


def channel_health(error: BaseException) -> Health:
    """What ``error`` says of its channel: a refusal of one message (a bad number, an
    unsubscribed recipient) opened the channel's breaker for every room."""
    code, metadata = _details(error)
    if code in _REFUSED_UNSENT:
        return Health.UNKNOWN
    if metadata.get("retryable", True) is not False:
        return Health.FAILING
    status = metadata.get("status_code")
    if isinstance(status, bool) or not isinstance(status, int):
        return Health.FAILING
    if 200 <= status < 300:
        # The vendor's own refusal in a success answer (VoiceMeUp's invalid_destination).
        return Health.ANSWERING
    if 400 <= status < 500 and status not in _CHANNEL_WIDE_STATUSES:
        return Health.ANSWERING
    return Health.FAILING
