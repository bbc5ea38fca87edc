"""Where a text may be cut without breaking a character a reader sees as one.

A cut at a code point split a family emoji (its people joined by ZERO WIDTH JOINERs), a flag
(two regional indicators) or a letter and its combining accents: the target got a broken
emoji, a lone regional indicator, a letter without its accent. The rules here are the few of
Unicode's grapheme clusters (UAX #29) that such texts need, not all of them: a cut never lands
before a mark (a Thai or Lao SARA AM too), a joiner, a variation selector, an emoji modifier
or tag, or a Hangul vowel or final consonant, nor after a joiner, nor inside a pair of
regional indicators or a CR LF.
"""

from __future__ import annotations

import unicodedata

__all__ = ["cut_point"]

_ZWJ = "\u200d"
_EXTENDING_CATEGORIES = frozenset({"Mn", "Me", "Mc"})
_EXTENDING_RANGES = (
    (0x0E33, 0x0E33),  # Thai SARA AM: a vowel (category Lo) spaced with the letter before
    (0x0EB3, 0x0EB3),  # Lao SARA AM, likewise
    (0x1160, 0x11FF),  # Hangul jungseong and jongseong: the rest of a syllable
    (0xFE00, 0xFE0F),  # variation selectors (an emoji's presentation)
    (0x1F3FB, 0x1F3FF),  # emoji skin-tone modifiers
    (0xE0020, 0xE007F),  # tags (subdivision flags)
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)


def _extends(char: str) -> bool:
    """Whether ``char`` belongs with the character before it."""
    if char == _ZWJ or unicodedata.category(char) in _EXTENDING_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _EXTENDING_RANGES)


def _regional(char: str) -> bool:
    low, high = _REGIONAL_INDICATORS
    return low <= ord(char) <= high


def cut_point(text: str, limit: int) -> int:
    """The largest index at most ``limit`` where ``text`` may be cut: ``text[:index]`` ends
    with whole characters (0 when its first one is longer than ``limit``)."""
    index = min(max(limit, 0), len(text))
    while 0 < index < len(text):
        char, before = text[index], text[index - 1]
        if _extends(char) or before == _ZWJ or (before == "\r" and char == "\n"):
            index -= 1
            continue
        if _regional(char) and _regional(before):
            run = 0  # the regional indicators right before the cut: an odd run splits a flag
            while run < index and _regional(text[index - 1 - run]):
                run += 1
            if run % 2:
                index -= 1
                continue
        break
    return index
