"""Personal WhatsApp accounts, sending through a connected client that something else owns.

A personal account has no HTTP API: it speaks the WhatsApp Web multi-device protocol, which the
reference library reaches through the neonize client owned by its source (which also receives the
messages). RoomKit does not bundle such a client. :class:`WhatsAppPersonalProvider` therefore
delegates to a *source* object given by the caller that implements
:class:`WhatsAppPersonalSource` (for example an adapter around a neonize client), and refuses to
be built without one.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from providers.whatsapp.base import WhatsAppProvider
from roomkit.models.delivery import ProviderResult
from roomkit.models.event import EventContent, RoomEvent

__all__ = ["WhatsAppPersonalProvider", "WhatsAppPersonalSource"]

logger = logging.getLogger("roomkit.providers.whatsapp.personal")


@runtime_checkable
class WhatsAppPersonalSource(Protocol):
    """What :class:`WhatsAppPersonalProvider` needs from the client owner.

    Only :meth:`send` is required. The provider also uses, when the source has them:
    ``async send_reaction(chat, sender, message_id, emoji) -> str | None``,
    ``async send_composing(chat)``, ``async send_paused(chat)``, ``async send_recording(chat)``
    and
    ``async mark_read(chat, sender, message_ids)``; and a ``connected`` attribute (False makes
    sends fail fast with ``not_connected``).
    """

    async def send(self, to: str, content: EventContent) -> str | None:
        """Send ``content`` to the chat ``to`` (a phone number or JID); return the message id.

        Text, media (image, video, audio as a voice note, document), location and composite
        content should be supported; raise on failure.
        """
        ...


_MISSING_SOURCE = (
    "WhatsAppPersonalProvider needs a source: an object with an async "
    "send(to, content) method that owns a connected WhatsApp Web client (e.g. an adapter "
    "around a neonize client). RoomKit does not bundle one; see "
    "providers.whatsapp.personal.WhatsAppPersonalSource."
)


class WhatsAppPersonalProvider(WhatsAppProvider):
    """Sends from a personal WhatsApp account through a caller-supplied source.

    Args:
        source: The client owner (see :class:`WhatsAppPersonalSource`).

    Raises:
        ValueError: ``source`` is None.
        TypeError: ``source`` has no async ``send(to, content)``.
    """

    def __init__(self, source: Any) -> None:
        if source is None:
            raise ValueError(_MISSING_SOURCE)
        if not isinstance(source, WhatsAppPersonalSource):
            raise TypeError(f"{_MISSING_SOURCE} Got {type(source).__name__}, which has no send.")
        self._source = source

    @property
    def source(self) -> WhatsAppPersonalSource:
        """The object that owns the WhatsApp client."""
        return self._source

    def _connected(self) -> bool:
        return getattr(self._source, "connected", True) is not False

    async def send(self, event: RoomEvent, to: str) -> ProviderResult:
        """Send ``event``'s content to ``to`` through the source.

        Returns:
            ``provider_message_id`` = the id the source returned; failures as ``success=False``
            with ``missing_recipient``, ``not_connected`` or ``send_failed`` (the exception type
            in ``metadata["detail"]``).
        """
        if not to:
            return ProviderResult(success=False, error="missing_recipient")
        if not self._connected():
            return ProviderResult(success=False, error="not_connected")
        try:
            message_id = await self._source.send(to, event.content)
        except Exception as exc:  # the source's client raises its own types: report, not raise
            logger.warning("whatsapp personal send failed: %s", type(exc).__name__)
            return ProviderResult(
                success=False,
                error="send_failed",
                metadata={"provider": self.name, "detail": type(exc).__name__},
            )
        return ProviderResult(
            success=True, provider_message_id=message_id if isinstance(message_id, str) else None
        )

    async def _optional(self, method: str, *args: Any) -> Any:
        fn = getattr(self._source, method, None)
        if fn is None:
            raise NotImplementedError(f"the WhatsApp personal source has no {method}()")
        return await fn(*args)

    async def send_reaction(
        self, chat: str, sender: str, message_id: str, emoji: str
    ) -> ProviderResult:
        """React to a message through the source (``""`` removes the reaction).

        Raises:
            NotImplementedError: The source cannot send reactions.
        """
        try:
            reaction_id = await self._optional("send_reaction", chat, sender, message_id, emoji)
        except NotImplementedError:
            raise
        except Exception as exc:
            logger.warning("whatsapp personal reaction failed: %s", type(exc).__name__)
            return ProviderResult(success=False, error="send_failed")
        return ProviderResult(
            success=True, provider_message_id=reaction_id if isinstance(reaction_id, str) else None
        )

    async def send_typing(self, to: str, *, is_typing: bool = True, media: str = "text") -> None:
        """Show (or stop showing) "typing…" in the chat ``to`` (0.3.0's signature).

        ``media="audio"`` shows "recording audio…" instead, through the source's
        ``send_recording(chat)`` when it has one (else as typing).

        Raises:
            ValueError: ``media`` is neither ``"text"`` nor ``"audio"``.
            NotImplementedError: The source cannot send chat presence.
        """
        if media not in ("text", "audio"):
            raise ValueError(f"media is 'text' or 'audio', not {media!r}")
        if not is_typing:
            await self._optional("send_paused", to)
        elif media == "audio" and callable(getattr(self._source, "send_recording", None)):
            await self._optional("send_recording", to)
        else:
            await self._optional("send_composing", to)

    async def mark_read(self, message_ids: list[str], chat: str, sender: str) -> None:
        """Send read receipts for ``message_ids`` from ``sender`` in ``chat`` (0.3.0's order).

        Raises:
            TypeError: ``message_ids`` is not a list of ids (a call in another order, say).
            NotImplementedError: The source cannot send read receipts.
        """
        if isinstance(message_ids, str) or not all(isinstance(m, str) for m in message_ids):
            raise TypeError(
                f"message_ids is a list of message ids (mark_read(message_ids, chat, sender)), "
                f"got {message_ids!r}"
            )
        await self._optional("mark_read", chat, sender, list(message_ids))
