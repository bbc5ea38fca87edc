"""Fields shared by the AI vendors' configs."""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = ["DEFAULT_TIMEOUT", "AITimeout", "MaxRetries"]

logger = logging.getLogger("roomkit.providers.ai")

DEFAULT_TIMEOUT = 120.0
"""Seconds allowed for each request unless the config says otherwise."""


def _positive_or_default(value: float) -> float:
    # 0.3.0's OpenAI, Anthropic and Gemini configs had no timeout: one given to them was
    # ignored and requests went out with the SDK's own. Refusing 0 or -1 now would stop
    # applications that worked; a bound that no request could meet would fail every call.
    if value > 0:
        return value
    logger.warning(
        "AI provider timeout %r is not a positive number of seconds: %s s is used instead",
        value,
        DEFAULT_TIMEOUT,
    )
    return DEFAULT_TIMEOUT


AITimeout = Annotated[float, AfterValidator(_positive_or_default)]
"""A request timeout in seconds; 0, a negative number or NaN gives :data:`DEFAULT_TIMEOUT`
(with a warning)."""

MaxRetries = Annotated[int, Field(ge=0)]
"""How many times a failed request may be sent again (see :mod:`providers.ai._http`)."""
