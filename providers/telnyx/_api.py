"""The Telnyx v2 Messages API call shared by the SMS and RCS providers.

``POST {base}/v2/messages`` with ``Authorization: Bearer <api key>`` and a JSON body (``from``,
``to``, ``text``, ``media_urls``, ``messaging_profile_id``, ``webhook_url``; RCS adds
``type: "RCS"`` and ``auto_detect``). Success answers ``{"data": {"id": ..., "type": "SMS",
"to": [{"phone_number": ..., "status": "queued"}], ...}}``; errors answer
``{"errors": [{"code": "40310", "title": ..., "detail": ...}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from providers.sms._http import HTTPFailure, VendorHTTP, response_json

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["TelnyxSent", "bearer", "send_message", "telnyx_error"]


def bearer(api_key: SecretStr) -> dict[str, str]:
    """The Authorization header for ``api_key``."""
    return {"Authorization": f"Bearer {api_key.get_secret_value()}"}


def telnyx_error(body: Any) -> tuple[str | None, str | None]:
    """Telnyx' ``(code, detail or title)`` of the first error in an error body."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    first = errors[0]
    code = first.get("code")
    message = first.get("detail") or first.get("title")
    return (
        str(code) if isinstance(code, int | str) and code != "" else None,
        message if isinstance(message, str) else None,
    )


@dataclass(frozen=True, slots=True)
class TelnyxSent:
    """A message Telnyx accepted: its id and the ``data`` object."""

    id: str
    data: dict[str, Any]

    @property
    def status(self) -> str | None:
        """The first recipient's status (``queued``, ...)."""
        to = self.data.get("to")
        if isinstance(to, list) and to and isinstance(to[0], dict):
            status = to[0].get("status")
            return status if isinstance(status, str) else None
        return None


async def send_message(
    http: VendorHTTP, *, base_url: str, api_key: SecretStr, body: dict[str, Any]
) -> TelnyxSent | HTTPFailure:
    """Create one message with the JSON ``body``."""
    outcome = await http.request(
        "POST",
        f"{base_url.rstrip('/')}/v2/messages",
        json=body,
        headers=bearer(api_key),
        extract_error=telnyx_error,
    )
    if isinstance(outcome, HTTPFailure):
        return outcome
    data = response_json(outcome)
    data = data.get("data") if isinstance(data, dict) else None
    if isinstance(data, dict):
        message_id = data.get("id")
        if isinstance(message_id, str) and message_id:
            return TelnyxSent(id=message_id, data=data)
    return HTTPFailure(
        "invalid_response",
        "Telnyx answered without a message id",
        provider=http.provider,
        status_code=outcome.status_code,
    )
