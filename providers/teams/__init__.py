"""Microsoft Teams providers: the :class:`TeamsProvider` contract and a mock; the Bot Framework
provider over the Connector REST API (:class:`BotFrameworkTeamsProvider`, needs httpx), its
conversation-reference stores, activity parsers and JWT check (needs cryptography) load on first
access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.teams.base import TeamsProvider
from providers.teams.mock import MockTeamsProvider

__all__ = ["MockTeamsProvider", "TeamsProvider"]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``) stays light; ``__all__`` keeps the names ``providers`` re-exports.
_VENDOR_EXPORTS: dict[str, str] = {
    "conversation_reference_from_activity": "providers.teams.activity",
    "is_bot_added": "providers.teams.activity",
    "parse_teams_activity": "providers.teams.activity",
    "parse_teams_webhook": "providers.teams.activity",
    "strip_mentions": "providers.teams.activity",
    "BOT_FRAMEWORK_ISSUER": "providers.teams.auth",
    "BOT_FRAMEWORK_JWKS_URL": "providers.teams.auth",
    "BOT_FRAMEWORK_OPENID_METADATA_URL": "providers.teams.auth",
    "TeamsJWTError": "providers.teams.auth",
    "verify_teams_jwt": "providers.teams.auth",
    "BotFrameworkTeamsProvider": "providers.teams.botframework",
    "TeamsConfig": "providers.teams.botframework",
    "ConversationReferenceStore": "providers.teams.references",
    "InMemoryConversationReferenceStore": "providers.teams.references",
}

__getattr__, __dir__ = lazy_exports(__name__, _VENDOR_EXPORTS)
