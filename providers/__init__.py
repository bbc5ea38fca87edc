"""Provider contracts, AI models and in-memory mocks for every channel kind.

Each kind lives in its own subpackage (``providers.sms``, ``providers.ai``, ...) with a ``base``
module (the ABC) and a ``mock`` module (a recorder with no network). Vendor implementations
(``providers.twilio``, ``providers.anthropic``, ...) sit beside them and are not imported here, so
that ``import providers`` needs no optional dependency.

Providers import only ``roomkit.models``, never ``roomkit.core``.
"""

from __future__ import annotations

# Load the roomkit package (and its models) before any provider module: ``roomkit/__init__``
# re-exports channels that import provider modules, so it must be complete before they start.
import roomkit.models  # noqa: F401
from providers.ai import (
    AIContext,
    AIImagePart,
    AIMessage,
    AIProvider,
    AIResponse,
    AITextPart,
    AITool,
    AIToolCall,
    MockAIProvider,
)
from providers.email import EmailProvider, MockEmailProvider
from providers.errors import ProviderError
from providers.http import HTTPProvider, MockHTTPProvider
from providers.messenger import MessengerProvider, MockMessengerProvider
from providers.rcs import MockRCSProvider, RCSDeliveryResult, RCSProvider
from providers.sms import (
    MockSMSProvider,
    SMSProvider,
    WebhookMeta,
    extract_sms_meta,
    is_valid_phone,
    normalize_phone,
)
from providers.teams import MockTeamsProvider, TeamsProvider
from providers.whatsapp import MockWhatsAppProvider, WhatsAppProvider

__all__ = [
    # errors
    "ProviderError",
    # ABCs
    "AIProvider",
    "EmailProvider",
    "HTTPProvider",
    "MessengerProvider",
    "RCSProvider",
    "SMSProvider",
    "TeamsProvider",
    "WhatsAppProvider",
    # AI models
    "AIContext",
    "AIImagePart",
    "AIMessage",
    "AIResponse",
    "AITextPart",
    "AITool",
    "AIToolCall",
    # results
    "RCSDeliveryResult",
    # SMS webhooks and phone numbers
    "WebhookMeta",
    "extract_sms_meta",
    "is_valid_phone",
    "normalize_phone",
    # mocks
    "MockAIProvider",
    "MockEmailProvider",
    "MockHTTPProvider",
    "MockMessengerProvider",
    "MockRCSProvider",
    "MockSMSProvider",
    "MockTeamsProvider",
    "MockWhatsAppProvider",
]
