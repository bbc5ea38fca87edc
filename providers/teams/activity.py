"""Reading Bot Framework activities that Teams posts to the bot's messaging endpoint.

A Teams message activity looks like::

    {"type": "message", "id": "1700000000000", "timestamp": "2024-...Z",
     "serviceUrl": "https://smba.trafficmanager.net/amer/", "channelId": "msteams",
     "from": {"id": "29:1abc...", "name": "Megan Bowen", "aadObjectId": "..."},
     "conversation": {"id": "a:1xyz...", "conversationType": "personal", "tenantId": "..."},
     "recipient": {"id": "28:<bot app id>", "name": "RoomKit Bot"},
     "text": "<at>RoomKit Bot</at> hello", "textFormat": "plain",
     "entities": [{"type": "mention", "text": "<at>RoomKit Bot</at>",
                   "mentioned": {"id": "28:<bot app id>", "name": "RoomKit Bot"}}],
     "channelData": {"tenant": {"id": "..."}}}

When the bot is installed or added to a conversation Teams sends ``conversationUpdate`` with
``membersAdded`` (the bot among them) or ``installationUpdate`` with ``action: "add"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from providers._text import clean_strings
from providers.errors import ProviderError
from roomkit.models.delivery import InboundMessage
from roomkit.models.event import TextContent

__all__ = [
    "conversation_reference_from_activity",
    "is_bot_added",
    "parse_teams_activity",
    "parse_teams_webhook",
    "strip_mentions",
]

_HSPACE = " \t"
_PROVIDER = "BotFrameworkTeams"
_GROUP_TYPES = frozenset({"groupChat", "channel"})


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _require_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ProviderError("Teams activity must be a JSON object", provider=_PROVIDER)
    return payload


def _at_tags(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, name)`` of each ``<at ...>name</at>`` in ``text``, left to right.

    A scan with ``str.find`` rather than the regex ``<at[^>]*>(.*?)</at>`` (same matches): for
    each unclosed ``<at`` the regex searched the rest of the text again, quadratic time on text
    such as ``"<at>" * 4000``. Here every character is looked at a bounded number of times.
    """
    lower = text.lower()
    pos = 0
    while (start := lower.find("<at", pos)) >= 0:
        open_end = lower.find(">", start + 3)
        if open_end < 0:
            return  # no ">" left: no later "<at" can open a tag either
        close = lower.find("</at>", open_end + 1)
        if close < 0:
            return  # nothing left closes a tag
        yield start, close + 5, text[open_end + 1 : close]
        pos = close + 5


def _tidy_removal(out: list[str], text: str, end: int) -> int:
    """Mend the whitespace around a mention just removed (``out`` holds the text before it,
    ``text[end:]`` follows it), so that ``"hi <at>Bot</at> there"`` reads ``"hi there"``.

    Returns:
        Where the rest of ``text`` resumes (past the spaces that followed the mention).
    """
    while out and out[-1].endswith((" ", "\t")):
        out[-1] = out[-1].rstrip(_HSPACE)
        if not out[-1]:
            out.pop()
    at_start = not out
    while end < len(text) and text[end] in _HSPACE:
        end += 1
    if end == len(text):
        # Nothing follows on this message: no blank line or spaces left dangling at its end.
        while out and out[-1][-1:].isspace():
            out[-1] = out[-1].rstrip()
            if not out[-1]:
                out.pop()
        return end
    if at_start:
        # The message began with the mention: drop the line break it leaves too.
        while end < len(text) and text[end].isspace():
            end += 1
        return end
    if out[-1][-1] not in "\r\n" and text[end] not in "\r\n,.;:!?)":
        out.append(" ")
    return end


def strip_mentions(text: str, entities: Any = None, bot_id: str | None = None) -> str:
    """Remove the bot's ``<at>`` mentions from ``text``; other mentions keep their name.

    When the activity's entities say which mention is the bot's (an entity of type
    ``mention`` whose ``mentioned.id`` is ``bot_id`` and whose ``text`` is the ``<at>`` tag),
    only that one is removed and ``<at>Alice</at>`` becomes ``Alice``; without that
    information every ``<at>`` mention is removed. Only the spaces where a mention was removed
    are tidied; the rest of the text (line breaks, indentation) is kept as sent.
    """
    bot_mentions: set[str] = set()
    if bot_id is not None and isinstance(entities, list):
        for entity in entities:
            entity = _dict(entity)
            if entity.get("type") != "mention":
                continue
            if _dict(entity.get("mentioned")).get("id") == bot_id:
                mention = _str(entity.get("text"))
                if mention is not None:
                    bot_mentions.add(mention)
    out: list[str] = []
    pos = 0
    for start, end, name in _at_tags(text):
        if start > pos:
            out.append(text[pos:start])
        if bot_mentions and text[start:end] not in bot_mentions:
            out.append(name)
            pos = end
        else:
            pos = _tidy_removal(out, text, end)
    out.append(text[pos:])
    return "".join(out)


def parse_teams_activity(payload: Any) -> dict[str, Any]:
    """The fields of an activity that a bot usually needs, flattened with snake_case keys.

    0.3.0's keys, with its defaults when absent: ``activity_type``, ``conversation_id``,
    ``service_url``, ``tenant_id``, ``sender_id``, ``sender_name`` and ``bot_id`` (``""``),
    ``conversation_type`` (``"personal"``), ``is_group`` (``isGroup``, or a ``groupChat`` or
    ``channel`` conversation), ``members_added`` and ``members_removed`` (lists of ids). Added
    here (None or empty when absent): ``activity_id``, ``text`` (bot mentions stripped, trimmed),
    ``raw_text``, ``text_format``, ``aad_object_id``, ``channel_id`` (``msteams``),
    ``bot_name``, ``reply_to_id``, ``timestamp``, ``locale`` and ``action``.

    Raises:
        ProviderError: ``payload`` is not a JSON object.
    """
    # Lone surrogates as U+FFFD: one (half an emoji) in a text made the room refuse the
    # message at each of the vendor's retries, so it was lost.
    payload = clean_strings(_require_object(payload))
    sender = _dict(payload.get("from"))
    recipient = _dict(payload.get("recipient"))
    conversation = _dict(payload.get("conversation"))
    bot_id = _str(recipient.get("id"))
    raw_text = payload.get("text") if isinstance(payload.get("text"), str) else ""
    tenant_id = _str(conversation.get("tenantId")) or _str(
        _dict(_dict(payload.get("channelData")).get("tenant")).get("id")
    )

    def member_ids(key: str) -> list[str]:
        members = payload.get(key)
        if not isinstance(members, list):
            return []
        return [i for m in members if (i := _str(_dict(m).get("id"))) is not None]

    conversation_type = _str(conversation.get("conversationType"))
    # 0.3.0's defaults for its keys ("" and "personal"): bots written for it compare them with
    # strings and call string methods on them, which None would break.
    return {
        "activity_type": _str(payload.get("type")) or "",
        "activity_id": _str(payload.get("id")),
        # Trimmed as 0.3.0 trimmed the text of every message, a personal chat's included.
        "text": strip_mentions(raw_text, payload.get("entities"), bot_id).strip(),
        "raw_text": raw_text,
        "text_format": _str(payload.get("textFormat")),
        "sender_id": _str(sender.get("id")) or "",
        "sender_name": _str(sender.get("name")) or "",
        "aad_object_id": _str(sender.get("aadObjectId")),
        "conversation_id": _str(conversation.get("id")) or "",
        "conversation_type": conversation_type or "personal",
        # Group chats and channels are groups whether or not Teams sets isGroup, as in 0.3.0.
        "is_group": conversation.get("isGroup") is True or conversation_type in _GROUP_TYPES,
        "tenant_id": tenant_id or "",
        "service_url": _str(payload.get("serviceUrl")) or "",
        "channel_id": _str(payload.get("channelId")),
        "bot_id": bot_id or "",
        "bot_name": _str(recipient.get("name")),
        "reply_to_id": _str(payload.get("replyToId")),
        "timestamp": _str(payload.get("timestamp")),
        "locale": _str(payload.get("locale")),
        "action": _str(payload.get("action")),
        "members_added": member_ids("membersAdded"),
        "members_removed": member_ids("membersRemoved"),
    }


def parse_teams_webhook(payload: Any, channel_id: str) -> list[InboundMessage]:
    """Turn an activity into inbound messages: one for a ``message`` with text, else none.

    The sender is ``from.id``; the activity id is the external id and the idempotency key (Teams
    retries deliveries); the conversation id is the thread id. Metadata carries 0.3.0's keys
    ``conversation_id``, ``conversation_type``, ``is_group``, ``bot_mentioned`` (always True in
    a personal chat; in a group, whether an entity mentions the bot), ``sender_name``,
    ``service_url`` and ``tenant_id``, with ``teams_conversation_id`` (the channel's recipient
    key) and ``aad_object_id``, ``bot_id`` and ``reply_to_id`` when present. Bot mentions are
    stripped from the text (see :func:`strip_mentions`) and the text is trimmed.

    Raises:
        ProviderError: ``payload`` is not a JSON object.
    """
    activity = parse_teams_activity(payload)
    if activity["activity_type"] != "message" or not activity["text"]:
        return []
    sender = activity["sender_id"]
    conversation_id = activity["conversation_id"]
    if not sender or not conversation_id:
        return []
    is_group = activity["is_group"]
    metadata: dict[str, Any] = {
        "teams_conversation_id": conversation_id,
        # 0.3.0's keys, always present: group-chat bots read bot_mentioned to decide whether
        # the message is addressed to them.
        "conversation_id": conversation_id,
        "conversation_type": activity["conversation_type"],
        "is_group": is_group,
        "bot_mentioned": not is_group or _mentions_bot(payload, activity["bot_id"]),
        "sender_name": activity["sender_name"],
        "service_url": activity["service_url"],
        "tenant_id": activity["tenant_id"],
    }
    metadata.update(
        {k: activity[k] for k in ("aad_object_id", "bot_id", "reply_to_id") if activity[k]}
    )
    return [
        InboundMessage(
            channel_id=channel_id,
            sender_id=sender,
            content=TextContent(body=activity["text"]),
            external_id=activity["activity_id"],
            thread_id=conversation_id,
            idempotency_key=activity["activity_id"],
            metadata=metadata,
        )
    ]


def _mentions_bot(payload: dict[str, Any], bot_id: str) -> bool:
    """Whether one of the activity's ``mention`` entities names ``bot_id`` (0.3.0's test)."""
    entities = payload.get("entities")
    if not bot_id or not isinstance(entities, list):
        return False
    return any(
        _dict(entity).get("type") == "mention"
        and _dict(_dict(entity).get("mentioned")).get("id") == bot_id
        for entity in entities
    )


def is_bot_added(payload: Any, bot_id: str | None = None) -> bool:
    """Whether the activity announces that the bot joined a conversation.

    True for ``conversationUpdate`` whose ``membersAdded`` contains the bot (``bot_id``, or the
    activity's recipient when None), and for ``installationUpdate`` with ``action == "add"``.
    Never raises: anything else is False.
    """
    if not isinstance(payload, dict):
        return False
    activity = parse_teams_activity(payload)
    if activity["activity_type"] == "installationUpdate":
        return bool(activity["action"] == "add")
    bot = bot_id or activity["bot_id"]
    if activity["activity_type"] != "conversationUpdate" or not bot:
        return False
    return bot in activity["members_added"]


def conversation_reference_from_activity(payload: Any) -> dict[str, Any]:
    """The conversation reference (see :mod:`providers.teams.references`) of an activity.

    Raises:
        ProviderError: ``payload`` is not an object or lacks ``conversation.id`` or
            ``serviceUrl``.
    """
    payload = _require_object(payload)
    conversation = _dict(payload.get("conversation"))
    service_url = _str(payload.get("serviceUrl"))
    if _str(conversation.get("id")) is None or service_url is None:
        raise ProviderError(
            "Teams activity has no conversation.id or serviceUrl", provider=_PROVIDER
        )
    reference: dict[str, Any] = {
        "activityId": _str(payload.get("id")),
        "channelId": _str(payload.get("channelId")) or "msteams",
        "serviceUrl": service_url,
        "conversation": dict(conversation),
    }
    if isinstance(payload.get("from"), dict):
        reference["user"] = dict(payload["from"])
    if isinstance(payload.get("recipient"), dict):
        reference["bot"] = dict(payload["recipient"])
    if _str(payload.get("locale")) is not None:
        reference["locale"] = payload["locale"]
    return reference
