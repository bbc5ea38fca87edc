"""Microsoft Teams providers: the :class:`TeamsProvider` contract and a mock; the Bot Framework
provider over the Connector REST API (:class:`BotFrameworkTeamsProvider`, needs httpx), its
conversation-reference stores, activity parsers and JWT check (needs cryptography) load on first
access."""

from __future__ import annotations

from providers._lazy import lazy_exports
from providers.teams.base import TeamsProvider
from providers.teams.mock import MockTeamsProvider

# The lazy names too, as 0.3.0 listed its vendor classes: ``from roomkit.providers.X import *``
# brings them (and loads the vendor modules, as importing 0.3.0's package did).
__all__ = [
    "BOT_FRAMEWORK_ISSUER",
    "BOT_FRAMEWORK_JWKS_URL",
    "BOT_FRAMEWORK_OPENID_METADATA_URL",
    "BotFrameworkTeamsProvider",
    "ConversationReferenceStore",
    "InMemoryConversationReferenceStore",
    "MockTeamsProvider",
    "TeamsConfig",
    "TeamsJWTError",
    "TeamsProvider",
    "conversation_reference_from_activity",
    "is_bot_added",
    "parse_teams_activity",
    "parse_teams_webhook",
    "strip_mentions",
    "verify_teams_jwt",
]

# Vendor implementations load on first access, so that importing the package (and
# ``providers``, which re-exports only the contract and the mock) stays light.
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
