"""Re-assembly of VoiceMeUp MMS that arrive as several webhooks.

VoiceMeUp delivers an MMS with a picture and a text as separate webhooks, each with its own
id. As RoomKit 0.3.0 documented it, the text comes first with a ``.mms.html`` "attachment" (a
wrapper page, not media), then the picture without text. :class:`VoiceMeUpMMSAggregator`
drops the wrapper, holds such a text back, keyed by (sender, recipient, time of transmission:
0.3.0's key; the parts of one MMS carry the same), and merges the next attachment-only
message of that key into it: the room sees one message, the text as its
caption, with 0.3.0's id ``<first id>+<second id>``. A text whose picture does not come
within ``timeout_seconds`` is released alone, through ``on_timeout``. The other order (the
attachment, then the text) is merged too: an attachment-only message is held and merged into
the next text of the pair; several attachments accumulate (a retried webhook of a part
already held is not added twice). A part VoiceMeUp sends again once its MMS was merged (it
retries a webhook answered late) comes out as the merged message again, whose id the kit
knows: a duplicate, not a second message (the last ``2 * max_pending`` part ids merged are
remembered). A plain text with nothing held back passes straight through
(text-only SMS are never delayed).

An attachment is held back only once something takes expired parts:
:meth:`~VoiceMeUpMMSAggregator.run` running with an ``on_timeout`` to pass them to, or a
caller of :meth:`~VoiceMeUpMMSAggregator.expired` / :meth:`~VoiceMeUpMMSAggregator.flush_expired`
(which return them): only they release expired parts (``on_timeout`` alone is never called,
since nothing runs on its own). Otherwise (the
defaults) a picture-only MMS would wait forever, so attachments pass straight through,
unmerged: the room gets the picture and the text as two messages rather than losing the
picture.

RoomKit 0.3.0 kept this buffer in module-level globals and started its timers with
``asyncio.create_task`` (quirk 18): two kits in one process shared one buffer, and timer tasks
were orphans. Here the buffer is an object; each :class:`~providers.voicemeup.VoiceMeUpSMSProvider`
has its own; and nothing runs on its own: the caller releases expired attachments by calling
:meth:`VoiceMeUpMMSAggregator.flush_expired` (from any event loop, e.g. on a periodic job) or
by running :meth:`VoiceMeUpMMSAggregator.run` in a task group it owns::

    aggregator = VoiceMeUpMMSAggregator(on_timeout=lambda meta: kit.process_webhook(meta, "sms"))
    async with anyio.create_task_group() as tg:
        await tg.start(aggregator.run)
        ...

VoiceMeUp does not send a part again once it was answered, so a part still held when the app
stops would be lost: when :meth:`~VoiceMeUpMMSAggregator.run` ends (cancelled), it passes
every part still held to ``on_timeout`` first, as if its time had run out (shielded, for up
to ``STOP_GRACE_SECONDS``; what is left then is logged as lost). An app that drains with
:meth:`~VoiceMeUpMMSAggregator.flush_expired` instead calls ``flush_expired(now=math.inf)``
as it stops.

The module-level :func:`configure_voicemeup_mms` and the module functions that take no
``aggregator`` (``extract_voicemeup_meta``, ``parse_voicemeup_webhook``,
``extract_sms_meta("voicemeup", ...)``) use one default instance, for compatibility with
0.3.0's API; pass an ``aggregator=`` to keep instances apart.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus

from providers.sms.meta import WebhookMedia, WebhookMeta
from roomkit.models.delivery import InboundMessage

__all__ = [
    "STOP_GRACE_SECONDS",
    "MMSTimeoutCallback",
    "VoiceMeUpMMSAggregator",
    "configure_voicemeup_mms",
    "default_voicemeup_aggregator",
]

logger = logging.getLogger("roomkit.providers.voicemeup")

#: How long ``run()`` ending passes the parts still held to ``on_timeout`` (see the module doc).
STOP_GRACE_SECONDS = 10.0

MMSTimeoutCallback = Callable[[WebhookMeta], Awaitable[object] | object]
"""Called with an attachment released alone (an inbound :class:`WebhookMeta`; hand it to
``kit.process_webhook(meta, channel_id)``). May be sync or async."""


@dataclass
class _Held:
    """Attachments of one (sender, recipient) pair waiting for their text."""

    meta: WebhookMeta
    deadline: float
    part_ids: list[str] = field(default_factory=list)
    # A text whose attachment follows (VoiceMeUp's first part), not attachments.
    text_first: bool = False


class VoiceMeUpMMSAggregator:
    """Merges VoiceMeUp MMS parts (see the module doc).

    Args:
        timeout_seconds: How long an attachment waits for its text; ``<= 0`` disables merging
            (every part passes through at once).
        on_timeout: Receives each attachment released alone by :meth:`flush_expired`.
            Attachments are held only once the caller drains the aggregator (see the module
            doc).
        clock: Monotonic clock, in seconds (the ``now`` arguments use it).
        max_pending: Most attachments held at once; past it the oldest is released early.
    """

    def __init__(
        self,
        timeout_seconds: float = 5.0,
        on_timeout: MMSTimeoutCallback | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 1000,
    ) -> None:
        self._timeout = timeout_seconds
        self._on_timeout = on_timeout
        self._clock = clock
        self._max_pending = max_pending
        self._held: dict[tuple[str, str, str], _Held] = {}
        self._released: list[WebhookMeta] = []
        # Released parts whose on_timeout runs (see _release).
        self._handing: list[WebhookMeta] = []
        # The merged message of each part id of the last max_pending merged MMS, oldest
        # first: a part retried once merged comes out as it again (see add).
        self._merged_parts: OrderedDict[str, WebhookMeta] = OrderedDict()
        # Set once a caller takes expired parts (expired / flush_expired), or run() passes
        # them to on_timeout: only then does a held part have a way out, so only then are
        # parts held.
        self._drained = False
        self._running = False
        # Set by configure_voicemeup_mms (0.3.0's API): on_timeout takes an InboundMessage of
        # the channel each part was parsed for (note_channel), as 0.3.0's callback did.
        self._hands_inbound = False
        self._channels: OrderedDict[str, str] = OrderedDict()

    @property
    def timeout_seconds(self) -> float:
        """How long an attachment waits for its text."""
        return self._timeout

    @property
    def on_timeout(self) -> MMSTimeoutCallback | None:
        """The callback of attachments released alone."""
        return self._on_timeout

    @property
    def pending(self) -> int:
        """Attachment groups held or released but not yet flushed."""
        return len(self._held) + len(self._released)

    def configure(
        self, timeout_seconds: float = 5.0, on_timeout: MMSTimeoutCallback | None = None
    ) -> None:
        """Change the timeout and the callback (held parts keep their deadlines)."""
        self._timeout = timeout_seconds
        self._on_timeout = on_timeout
        self._hands_inbound = False  # a callback of this API takes the WebhookMeta

    def add(self, meta: WebhookMeta, *, now: float | None = None) -> WebhookMeta:
        """Feed one parsed webhook.

        Returns:
            ``meta`` unchanged when it is not an MMS part to merge (or when nothing would
            release a held part, see the module doc); a copy with ``pending=True`` when it is
            held back (the caller must not process it); or, for a text completing held
            attachments, the merged message (the held attachments, then this message's own,
            with this message's text and id, and the ids of every part in
            ``extra["mms_part_ids"]``).
        """
        if self._timeout <= 0 or not meta.is_inbound:
            return meta
        merged = self._merged_parts.get(meta.message_id) if meta.message_id else None
        if merged is not None:
            # VoiceMeUp retried a part of an MMS merged already: held again, it came out
            # alone on its timeout, as a second message. The merged one's id is a duplicate.
            logger.debug(
                "voicemeup: part %s of merged MMS %s again", meta.message_id, merged.message_id
            )
            return merged
        current = self._clock() if now is None else now
        self._expire(current)
        key = (meta.sender, meta.recipient, str(meta.extra.get("datetime_transmission") or ""))
        held = self._held.get(key)
        # run() alone passes released parts to on_timeout, and to nobody without one.
        holds = self._drained or (self._running and self._on_timeout is not None)
        real = [m for m in meta.media if not _is_wrapper(m)]
        if len(real) < len(meta.media):
            # VoiceMeUp's first part: the text, with a wrapper page instead of the picture,
            # which follows. The wrapper is never media (0.3.0 dropped it too).
            meta = meta.model_copy(update={"media": real})
            if not real and holds:
                return self._hold_text(key, held, meta, current)
        attachment_only = bool(meta.media) and not meta.body
        if held is not None and held.text_first:
            if not attachment_only:
                return meta  # another text of the pair: the held one waits for its picture
            return self._complete_text(key, held, meta)
        if attachment_only and holds:
            if held is None:
                self._held[key] = _Held(
                    meta=meta, deadline=current + self._timeout, part_ids=_ids(meta)
                )
                self._enforce_limit()
            elif not (meta.message_id and meta.message_id in held.part_ids):
                # A retried webhook (same id) is already held: adding it again would send the
                # picture twice.
                merged_media = [*held.meta.media, *meta.media]
                held.meta = held.meta.model_copy(update={"media": merged_media})
                held.part_ids.extend(_ids(meta))
            return meta.model_copy(update={"pending": True})
        if held is None:
            if attachment_only:
                logger.debug("voicemeup: nobody drains the aggregator; not holding MMS part")
            return meta
        return self._complete_attachments(key, held, meta)  # a text completes them

    def _hold_text(
        self, key: tuple[str, str, str], held: _Held | None, meta: WebhookMeta, now: float
    ) -> WebhookMeta:
        if held is not None and not held.text_first:
            # Its picture came first (two webhooks sent at once arrive in either order): the
            # same message as in the documented order, under the same id.
            del self._held[key]
            return self._merged(key, meta, _ids(meta), held.meta, held.part_ids)
        if held is not None:
            if meta.message_id and meta.message_id in held.part_ids:
                return meta.model_copy(update={"pending": True})  # a retried webhook
            # Another text of the same key still held: out now, as on a timeout.
            self._released.append(self._held.pop(key).meta)
        self._held[key] = _Held(
            meta=meta, deadline=now + self._timeout, part_ids=_ids(meta), text_first=True
        )
        self._enforce_limit()
        return meta.model_copy(update={"pending": True})

    def _complete_attachments(
        self, key: tuple[str, str, str], held: _Held, meta: WebhookMeta
    ) -> WebhookMeta:
        """``meta`` (a text) with the held attachments before its own, and its id."""
        del self._held[key]
        retried = bool(meta.message_id) and meta.message_id in held.part_ids
        media: list[WebhookMedia] = [*held.meta.media, *([] if retried else meta.media)]
        own_ids = [] if retried else _ids(meta)
        extra = {**meta.extra, "mms_part_ids": [*held.part_ids, *own_ids]}
        if "has_attachment" in extra:  # 0.3.0's key: the merged message has the attachments
            extra["has_attachment"] = bool(media)
        logger.debug("voicemeup: merged %d attachment(s) into message %s", len(media), key)
        return self._remember(meta.model_copy(update={"media": media, "extra": extra}))

    def _complete_text(
        self, key: tuple[str, str, str], held: _Held, meta: WebhookMeta
    ) -> WebhookMeta:
        """The held text with ``meta``'s attachments, under 0.3.0's merged id."""
        del self._held[key]
        return self._merged(key, held.meta, held.part_ids, meta, _ids(meta))

    def _merged(
        self,
        key: tuple[str, str, str],
        text: WebhookMeta,
        text_ids: list[str],
        pictures: WebhookMeta,
        picture_ids: list[str],
    ) -> WebhookMeta:
        """``text`` (parts ``text_ids``) with the attachments of ``pictures`` (parts
        ``picture_ids``), under 0.3.0's id: the text's, then the pictures', joined by ``+``."""
        part_ids = [*text_ids, *(i for i in picture_ids if i not in text_ids)]
        extra = {**text.extra, "mms_part_ids": part_ids}
        if "has_attachment" in extra:  # 0.3.0's key: the merged message has the attachments
            extra["has_attachment"] = True
        merged_id = "+".join(part_ids) if len(part_ids) > 1 else text.message_id
        logger.debug(
            "voicemeup: merged a text and %d attachment(s) of %s", len(pictures.media), key
        )
        return self._remember(
            text.model_copy(
                update={"media": list(pictures.media), "message_id": merged_id, "extra": extra}
            )
        )

    def _remember(self, merged: WebhookMeta) -> WebhookMeta:
        """Keep ``merged`` for its parts' retries (see add); return it."""
        part_ids = merged.extra.get("mms_part_ids") or []
        for part_id in part_ids:
            self._merged_parts[str(part_id)] = merged
            self._merged_parts.move_to_end(str(part_id))
        while len(self._merged_parts) > 2 * self._max_pending:
            self._merged_parts.popitem(last=False)
        return merged

    def expired(self, now: float | None = None) -> list[WebhookMeta]:
        """Remove and return the attachments whose text did not come in time (without calling
        ``on_timeout``).

        The first call also tells the aggregator that someone drains it: only from then on
        does it hold attachments (see the module doc).
        """
        self._drained = True
        return self._take_expired(now)

    def _take_expired(self, now: float | None) -> list[WebhookMeta]:
        self._expire(self._clock() if now is None else now)
        released, self._released = self._released, []
        return released

    async def flush_expired(self, now: float | None = None) -> list[WebhookMeta]:
        """Release the attachments whose text did not come in time: pass each to
        ``on_timeout`` (awaited when async; an exception is logged and the next one still
        runs) and return them."""
        self._drained = True
        return await self._release(now)

    async def _release(self, now: float | None = None) -> list[WebhookMeta]:
        self._expire(self._clock() if now is None else now)
        callback = self._on_timeout
        released: list[WebhookMeta] = []
        # One part at a time, each kept among those being handed on until its callback
        # returns: cancelled meanwhile (run() stopping), the rest of a round taken at once was
        # lost without a word; now run() ending hands them on (the one cut short again: a
        # duplicate to the kit). Taken out first, a part is handed on by one release only.
        while self._released:
            meta = self._released.pop(0)
            if callback is not None:
                self._handing.append(meta)
                await self._hand_on(callback, self._handed(meta))
                if meta in self._handing:  # clear() meanwhile forgot it
                    self._handing.remove(meta)
            elif not self._drained:  # run() alone: nobody takes it
                logger.warning(
                    "voicemeup: MMS attachment %s released with no on_timeout to take it "
                    "(the callback was removed while it was held): lost",
                    meta.message_id,
                )
            released.append(meta)
        return released

    def _handed(self, meta: WebhookMeta) -> WebhookMeta | InboundMessage:
        """What ``on_timeout`` receives of a released part: the part, or, for a callback of
        ``configure_voicemeup_mms``, its message on the channel it was parsed for (0.3.0
        called it so: ``kit.process_inbound(message)`` failed on a ``WebhookMeta``)."""
        channel_id = self._channels.pop(meta.message_id, None) if meta.message_id else None
        if not self._hands_inbound or channel_id is None:
            return meta
        return meta.to_inbound(channel_id)

    @staticmethod
    async def _hand_on(callback: MMSTimeoutCallback, handed: WebhookMeta | InboundMessage) -> None:
        """``callback(handed)``, awaited if async; its exception is logged."""
        try:
            result = callback(handed)  # type: ignore[arg-type]  # see _handed
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(
                "voicemeup: on_timeout failed for message %s",
                getattr(handed, "message_id", None) or getattr(handed, "external_id", None),
            )

    async def run(
        self,
        interval: float | None = None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call :meth:`flush_expired` every ``interval`` seconds (half the timeout by
        default) until cancelled; run it in a task group you own (``await tg.start(...)``)."""
        period = interval if interval is not None else max(self._timeout / 2, 0.05)
        self._running = True
        task_status.started()
        try:
            while True:
                await anyio.sleep(period)
                await self._release()
        finally:
            self._running = False
            await self._release_on_stop()

    async def _release_on_stop(self) -> None:
        """Pass every part still held to ``on_timeout`` as ``run()`` ends (see the module
        doc): VoiceMeUp had its answer for each, and will not send it again."""
        if self._on_timeout is None or not (self._held or self._released or self._handing):
            return  # without a callback, the caller drains them (expired())
        left = [*self._handing, *self._take_expired(math.inf)]
        self._handing.clear()
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + STOP_GRACE_SECONDS
            while left:
                await self._hand_on(self._on_timeout, left[0])
                del left[0]
        if left:
            logger.warning(
                "voicemeup: stopping, %d held MMS part(s) not handed on within %g s, lost: %s",
                len(left),
                STOP_GRACE_SECONDS,
                ", ".join(str(m.message_id) for m in left),
            )

    def clear(self) -> None:
        """Forget every held or released part (one being handed on too), and the merged MMS
        remembered."""
        self._held.clear()
        self._released.clear()
        self._handing.clear()
        self._merged_parts.clear()
        self._channels.clear()

    def note_channel(self, meta: WebhookMeta, channel_id: str) -> None:
        """Remember the channel a held part was parsed for (``parse_voicemeup_webhook``):
        the message an ``on_timeout`` of ``configure_voicemeup_mms`` receives is of it."""
        if meta.message_id:
            self._channels[meta.message_id] = channel_id
            self._channels.move_to_end(meta.message_id)
            while len(self._channels) > self._max_pending:
                self._channels.popitem(last=False)

    def _expire(self, now: float) -> None:
        for key in [key for key, held in self._held.items() if held.deadline <= now]:
            self._released.append(self._held.pop(key).meta)

    def _enforce_limit(self) -> None:
        while self._held and len(self._held) + len(self._released) > self._max_pending:
            oldest = min(self._held, key=lambda key: self._held[key].deadline)
            logger.warning("voicemeup: too many MMS parts held; releasing the oldest early")
            self._released.append(self._held.pop(oldest).meta)
        if len(self._released) > self._max_pending:
            dropped = len(self._released) - self._max_pending
            logger.warning("voicemeup: %d released MMS part(s) never flushed; dropped", dropped)
            del self._released[:dropped]


def _ids(meta: WebhookMeta) -> list[str]:
    return [meta.message_id] if meta.message_id else []


def _is_wrapper(media: WebhookMedia) -> bool:
    """Whether an attachment is VoiceMeUp's ``.mms.html`` wrapper page (0.3.0's test)."""
    url = media.url.split("?", 1)[0]
    return url.endswith(".mms.html") or (media.mime_type == "text/html" and ".mms." in url)


_default_aggregator = VoiceMeUpMMSAggregator()


def default_voicemeup_aggregator() -> VoiceMeUpMMSAggregator:
    """The aggregator used by the module-level functions when given none (0.3.0 API)."""
    return _default_aggregator


def configure_voicemeup_mms(
    timeout_seconds: float = 5.0, on_timeout: MMSTimeoutCallback | None = None
) -> VoiceMeUpMMSAggregator:
    """Configure the default aggregator (RoomKit 0.3.0's API) and return it.

    Expired attachments are released only by ``flush_expired()`` / ``run()`` of the returned
    aggregator (nothing runs in the background). As in 0.3.0, ``on_timeout`` receives an
    :class:`InboundMessage` of the channel ``parse_voicemeup_webhook`` was given
    (``kit.process_inbound(message)`` processes it); a part held through
    ``extract_voicemeup_meta``, which names no channel, is passed as its
    :class:`WebhookMeta` (``kit.process_webhook(meta, channel_id)``). Until one of them runs,
    attachments are not held at all (they would never come out), ``on_timeout`` or not:
    each MMS part then reaches the room as its own message.
    """
    _default_aggregator.configure(timeout_seconds=timeout_seconds, on_timeout=on_timeout)
    _default_aggregator._hands_inbound = True
    return _default_aggregator
