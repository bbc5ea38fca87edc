"""RoomKit 0.3.0's error codes of the SMS / RCS vendors' non-2xx answers.

The shared HTTP layer names failures by kind (``auth_error`` for 401 and 403, ``<vendor>_<code>``
for any 4xx with a vendor code, see :mod:`providers._http`). RoomKit 0.3.0's Twilio, Telnyx,
Sinch and VoiceMeUp providers named them by status, and applications match on those strings, so
these providers keep them (the vendor's code and message stay in the result's metadata,
``vendor_code`` and ``detail``):

======================  ==================================================================
``auth_error``          HTTP 401 (``http_401`` for VoiceMeUp)
``rate_limit``          HTTP 429 (``http_429`` for VoiceMeUp)
``<vendor>_<code>``     HTTP 400 with a JSON object, for the :attr:`~SMSErrorStyle.VENDOR_CODE`
                        style (``<vendor>_invalid_request`` when the object has no code)
``invalid_request``     any other HTTP 400 (``http_400`` for VoiceMeUp)
``http_<status>``       every other status, 403 included
======================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from providers._http import ErrorDetail, ErrorParser, response_json

if TYPE_CHECKING:
    import httpx

__all__ = ["SMSErrorStyle", "sms_error_parser"]

CodeExtractor = Callable[[Any], tuple[str | None, str | None]]
"""Reads the vendor's ``(code, message)`` from a decoded JSON body."""


class SMSErrorStyle(Enum):
    """How a 0.3.0 provider named the failure of a non-2xx answer."""

    VENDOR_CODE = "vendor_code"
    """Twilio, Sinch, Telnyx RCS: a 400 with a JSON object is ``<vendor>_<code>``."""
    INVALID_REQUEST = "invalid_request"
    """Telnyx SMS: every 400 is ``invalid_request``."""
    STATUS = "status"
    """VoiceMeUp: every answer is ``http_<status>``."""


def sms_error_parser(extract: CodeExtractor, prefix: str, style: SMSErrorStyle) -> ErrorParser:
    """An :data:`~providers._http.ErrorParser` naming failures with 0.3.0's codes (see the
    module doc); it still reads the vendor's code and message with ``extract``.

    Args:
        extract: Reads ``(code, message)`` from the decoded body (None when not JSON).
        prefix: The vendor's prefix (``"twilio"`` → ``twilio_21211``).
        style: Which of 0.3.0's namings the vendor had.
    """

    def parse(response: httpx.Response) -> ErrorDetail:
        body = response_json(response)
        vendor_code, message = extract(body)
        status = response.status_code
        if style is SMSErrorStyle.STATUS:
            code = f"http_{status}"
        elif status == 401:
            code = "auth_error"
        elif status == 429:
            code = "rate_limit"
        elif status == 400:
            # 0.3.0 read the code only out of a JSON object; anything else was a plain
            # invalid request.
            coded = style is SMSErrorStyle.VENDOR_CODE and isinstance(body, dict)
            code = f"{prefix}_{vendor_code or 'invalid_request'}" if coded else "invalid_request"
        else:
            code = f"http_{status}"
        return ErrorDetail(message=message or "", vendor_code=vendor_code, code=code)

    return parse
