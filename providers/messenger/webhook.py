"""RoomKit 0.3.0's module path ``roomkit.providers.messenger.webhook``; its names live in
``providers.messenger.facebook_webhook``."""

from __future__ import annotations

from providers.messenger.facebook_webhook import parse_messenger_webhook

__all__ = ["parse_messenger_webhook"]
