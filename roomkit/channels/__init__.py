"""Channels: the :class:`Channel` contract, its transport, AI and WebSocket implementations, and
one factory per messaging transport with that transport's capabilities.

Each factory returns a :class:`TransportChannel` configured for its kind: the channel type, the
binding metadata key that holds the recipient (``recipient_key``) and the extra arguments passed
to the provider's ``send``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from roomkit.channels.ai import AIChannel
from roomkit.channels.base import Channel
from roomkit.channels.transport import TransportChannel
from roomkit.channels.websocket import WebSocketChannel
from roomkit.models.channel import ChannelCapabilities
from roomkit.models.enums import ChannelMediaType, ChannelType

if TYPE_CHECKING:
    from providers.email.base import EmailProvider
    from providers.http.base import HTTPProvider
    from providers.messenger.base import MessengerProvider
    from providers.rcs.base import RCSProvider
    from providers.sms.base import SMSProvider
    from providers.teams.base import TeamsProvider
    from providers.whatsapp.base import WhatsAppProvider

__all__ = [
    "EMAIL_CAPABILITIES",
    "HTTP_CAPABILITIES",
    "MESSENGER_CAPABILITIES",
    "RCS_CAPABILITIES",
    "SMS_CAPABILITIES",
    "TEAMS_CAPABILITIES",
    "WHATSAPP_CAPABILITIES",
    "WHATSAPP_PERSONAL_CAPABILITIES",
    "AIChannel",
    "Channel",
    "EmailChannel",
    "HTTPChannel",
    "MessengerChannel",
    "RCSChannel",
    "SMSChannel",
    "TeamsChannel",
    "TransportChannel",
    "WebSocketChannel",
    "WhatsAppChannel",
    "WhatsAppPersonalChannel",
]

_TEXT = ChannelMediaType.TEXT
_RICH = ChannelMediaType.RICH
_MEDIA = ChannelMediaType.MEDIA
_AUDIO = ChannelMediaType.AUDIO
_VIDEO = ChannelMediaType.VIDEO
_LOCATION = ChannelMediaType.LOCATION
_TEMPLATE = ChannelMediaType.TEMPLATE

SMS_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _MEDIA],
    max_length=1600,
    supports_read_receipts=True,
    supports_media=True,
)
EMAIL_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _RICH, _MEDIA],
    supports_threading=True,
    supports_rich_text=True,
    supports_media=True,
)
WHATSAPP_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _RICH, _MEDIA, _LOCATION, _TEMPLATE],
    max_length=4096,
    supports_read_receipts=True,
    supports_reactions=True,
    supports_templates=True,
    supports_rich_text=True,
    supports_buttons=True,
    max_buttons=3,
    supports_quick_replies=True,
    supports_media=True,
)
WHATSAPP_PERSONAL_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _RICH, _MEDIA, _AUDIO, _VIDEO, _LOCATION],
    max_length=4096,
    supports_read_receipts=True,
    supports_reactions=True,
    supports_media=True,
    supported_media_types=["image/jpeg", "image/png", "image/webp"],
    supports_audio=True,
    supported_audio_formats=["audio/ogg", "audio/mp4"],
    supports_video=True,
    supported_video_formats=["video/mp4"],
    supports_typing=True,
)
MESSENGER_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _RICH, _MEDIA, _TEMPLATE],
    max_length=2000,
    supports_read_receipts=True,
    supports_buttons=True,
    max_buttons=3,
    supports_quick_replies=True,
    supports_media=True,
)
TEAMS_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _RICH],
    max_length=28000,
    supports_threading=True,
    supports_reactions=True,
    supports_read_receipts=True,
    supports_rich_text=True,
)
HTTP_CAPABILITIES = ChannelCapabilities(media_types=[_TEXT, _RICH])
RCS_CAPABILITIES = ChannelCapabilities(
    media_types=[_TEXT, _RICH, _MEDIA],
    max_length=8000,
    supports_read_receipts=True,
    supports_typing=True,
    supports_rich_text=True,
    supports_buttons=True,
    supports_quick_replies=True,
    supports_cards=True,
    supports_media=True,
)


def _check_optional_str(name: str, value: object) -> None:
    """Refuse a sender (number, address) that is neither a string nor None: the provider got
    it at every delivery, and failed or sent from nonsense."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {value!r}")


def SMSChannel(  # noqa: N802 - a factory named like the class it stands for (public API)
    channel_id: str, *, provider: SMSProvider | None = None, from_number: str | None = None
) -> TransportChannel:
    """An SMS channel; the recipient is the binding's ``phone_number`` metadata.

    Args:
        channel_id: Unique id of the channel.
        provider: The SMS provider that sends.
        from_number: Sender number; when None, the binding's ``from_`` metadata (if any), else
            the provider's own number.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` or ``from_number`` is not a string (``from_number`` may be
            None), or ``provider`` cannot send (see `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    _check_optional_str("from_number", from_number)
    return TransportChannel(
        channel_id,
        ChannelType.SMS,
        provider=provider,
        capabilities=SMS_CAPABILITIES,
        recipient_key="phone_number",
        defaults={"from_": from_number},
    )


def EmailChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: EmailProvider | None = None, from_address: str | None = None
) -> TransportChannel:
    """An email channel; the recipient is the binding's ``email_address`` metadata.

    Args:
        channel_id: Unique id of the channel.
        provider: The email provider that sends.
        from_address: Sender address; when None, the binding's ``from_`` metadata (if any).
            The subject always comes from the binding's ``subject`` metadata.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` or ``from_address`` is not a string (``from_address`` may
            be None), or ``provider`` cannot send (see `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    _check_optional_str("from_address", from_address)
    return TransportChannel(
        channel_id,
        ChannelType.EMAIL,
        provider=provider,
        capabilities=EMAIL_CAPABILITIES,
        recipient_key="email_address",
        defaults={"from_": from_address, "subject": None},
    )


def RCSChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: RCSProvider | None = None, fallback: bool | None = True
) -> TransportChannel:
    """An RCS channel; the recipient is the binding's ``phone_number`` metadata.

    Args:
        channel_id: Unique id of the channel.
        provider: The RCS provider that sends.
        fallback: Let the provider fall back to SMS when the recipient lacks RCS; None:
            read from the binding's ``fallback`` metadata at each delivery (a setting per
            room), as any None default of a transport channel.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` is not a string, ``fallback`` neither a bool (0 or 1
            taken as one) nor None, or ``provider`` cannot send (see `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    if fallback is not None and not (isinstance(fallback, int) and fallback in (0, 1)):
        # Passed to the provider's send at every delivery: "no" is true there.
        raise TypeError(f"fallback must be a bool or None, got {fallback!r}")
    return TransportChannel(
        channel_id,
        ChannelType.RCS,
        provider=provider,
        capabilities=RCS_CAPABILITIES,
        recipient_key="phone_number",
        defaults={"fallback": fallback},
    )


def WhatsAppChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: WhatsAppProvider | None = None
) -> TransportChannel:
    """A WhatsApp Business channel; the recipient is the binding's ``phone_number`` metadata.

    Args:
        channel_id: Unique id of the channel.
        provider: The WhatsApp provider that sends.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` is not a string, or ``provider`` cannot send (see
            `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    return TransportChannel(
        channel_id,
        ChannelType.WHATSAPP,
        provider=provider,
        capabilities=WHATSAPP_CAPABILITIES,
        recipient_key="phone_number",
    )


def WhatsAppPersonalChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: WhatsAppProvider | None = None
) -> TransportChannel:
    """A personal WhatsApp channel; the recipient is the binding's ``phone_number`` metadata.

    Args:
        channel_id: Unique id of the channel.
        provider: The WhatsApp provider that sends.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` is not a string, or ``provider`` cannot send (see
            `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    return TransportChannel(
        channel_id,
        ChannelType.WHATSAPP_PERSONAL,
        provider=provider,
        capabilities=WHATSAPP_PERSONAL_CAPABILITIES,
        recipient_key="phone_number",
    )


def MessengerChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: MessengerProvider | None = None
) -> TransportChannel:
    """A Facebook Messenger channel; the recipient is the binding's ``facebook_user_id``.

    Args:
        channel_id: Unique id of the channel.
        provider: The Messenger provider that sends.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` is not a string, or ``provider`` cannot send (see
            `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    return TransportChannel(
        channel_id,
        ChannelType.MESSENGER,
        provider=provider,
        capabilities=MESSENGER_CAPABILITIES,
        recipient_key="facebook_user_id",
    )


def TeamsChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: TeamsProvider | None = None
) -> TransportChannel:
    """A Microsoft Teams channel; the recipient is the binding's ``teams_conversation_id``.

    Args:
        channel_id: Unique id of the channel.
        provider: The Teams provider that sends.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` is not a string, or ``provider`` cannot send (see
            `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    return TransportChannel(
        channel_id,
        ChannelType.TEAMS,
        provider=provider,
        capabilities=TEAMS_CAPABILITIES,
        recipient_key="teams_conversation_id",
    )


def HTTPChannel(  # noqa: N802 - public API
    channel_id: str, *, provider: HTTPProvider | None = None
) -> TransportChannel:
    """A generic HTTP webhook channel; the recipient is the binding's ``recipient_id``.

    Args:
        channel_id: Unique id of the channel.
        provider: The HTTP provider that posts to the webhook.

    Returns:
        The configured channel.

    Raises:
        TypeError: ``channel_id`` is not a string, or ``provider`` cannot send (see
            `TransportChannel`).
        ValueError: ``channel_id`` is empty.
    """
    return TransportChannel(
        channel_id,
        ChannelType.WEBHOOK,
        provider=provider,
        capabilities=HTTP_CAPABILITIES,
        recipient_key="recipient_id",
    )
