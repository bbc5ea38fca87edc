"""Phone numbers in E.164 (``+`` country code, subscriber number; at most 15 digits).

With the optional ``phonenumbers`` package installed (``pip install phonenumbers``), both helpers
use Google's libphonenumber metadata: any national format of any region is understood and
validity is checked against the real numbering plans (``normalize_phone`` refuses a number
they do not allow, as 0.3.0 did). A string of 10 digits or more with no ``+`` is read as the
digits of an international number written without its ``+`` (as Sinch and VoiceMeUp write
them) if those make a valid number, as 0.3.0 read it; but a valid national number written as
``default_region`` writes its numbers, with as many digits as its example mobile or
fixed-line number (libphonenumber's), comes first (any ten digits in a NANP region): 0.3.0
read ``2034176848`` in the US as an Egyptian number, and a Chinese mobile ``15012345678`` in
China as a US one. A national number of another length (a Luxembourg line of ten or eleven
digits, a toll-free number) is still read as 0.3.0 read it, international first: write
national numbers with their ``+`` and country code where lengths vary.

Without it they fall back to a deliberately small set of rules, instead of failing (RoomKit
0.3.0's ``is_valid_phone`` returned False for every number when the package was missing):

* a number written with ``+`` (or with the international prefix: ``011`` in the North
  American Numbering Plan, ``00`` elsewhere) keeps its digits; formatting characters
  (spaces, ``-``, ``.``, ``/``, parentheses) are removed;
* a national number is understood only for NANP regions (US, CA and the other ``+1``
  countries): 10 digits, or 11 starting with 1; more digits than that are an international
  number written without its ``+``;
* validity means 7 to 15 digits with no leading 0, and for ``+1`` numbers the NANP shape
  (area code and exchange each starting with 2-9).
"""

from __future__ import annotations

import functools
import importlib
import re
from types import ModuleType

__all__ = ["is_valid_phone", "normalize_phone"]

# Regions that share country code 1 (the North American Numbering Plan).
_NANP_REGIONS = frozenset(
    {
        *("US", "CA", "AG", "AI", "AS", "BB", "BM", "BS", "DM", "DO", "GD", "GU", "JM"),
        *("KN", "KY", "LC", "MP", "MS", "PR", "SX", "TC", "TT", "VC", "VG", "VI"),
    }
)
_FORMATTING = re.compile(r"[\s\-./()]")
_NANP_NATIONAL = re.compile(r"[2-9]\d{2}[2-9]\d{6}")


@functools.cache
def _phonenumbers() -> ModuleType | None:
    """The ``phonenumbers`` module, or None when it is not installed (imported on first use)."""
    try:
        return importlib.import_module("phonenumbers")
    except ImportError:
        return None


def normalize_phone(number: str, default_region: str = "US") -> str:
    """Write ``number`` in E.164 (``+15145550100``).

    Args:
        number: A phone number in international (``+…``) or national format.
        default_region: ISO 3166 region assumed for a national number.

    Returns:
        The E.164 form.

    Raises:
        ValueError: ``number`` cannot be read as a phone number (or, without ``phonenumbers``,
            is a national number of a non-NANP region).
    """
    if not isinstance(number, str) or not number.strip():
        raise ValueError("phone number must be a non-empty string")
    pn = _phonenumbers()
    if pn is not None:
        parsed = _parsed(pn, number, default_region.upper())
        # 0.3.0's words, which apps and their tests may match.
        if parsed is None:
            raise ValueError(f"Cannot parse phone number: {number!r}")
        if not pn.is_valid_number(parsed):
            raise ValueError(f"Invalid phone number: {number!r}")
        e164: str = pn.format_number(parsed, pn.PhoneNumberFormat.E164)
        # libphonenumber deems some short numbers "possible" (``+4900``); E.164 needs 7+ digits.
        if not 8 <= len(e164) <= 16:
            raise ValueError(f"not an E.164 number: {number!r}")
        return e164
    return "+" + _fallback_digits(number, default_region.upper())


def is_valid_phone(number: str, default_region: str = "US") -> bool:
    """Whether ``number`` is a valid phone number (see the module doc for the rules used
    without ``phonenumbers``). Never raises."""
    if not isinstance(number, str) or not number.strip():
        return False
    pn = _phonenumbers()
    if pn is not None:
        parsed = _parsed(pn, number, default_region.upper())
        valid: bool = parsed is not None and pn.is_valid_number(parsed)
        return valid
    try:
        digits = _fallback_digits(number, default_region.upper())
    except ValueError:
        return False
    if digits.startswith("1"):
        return len(digits) == 11 and _NANP_NATIONAL.fullmatch(digits[1:]) is not None
    return True


def _parsed(pn: ModuleType, number: str, region: str) -> object | None:
    """``number`` parsed by ``phonenumbers``, or None if it cannot be: a national number of
    ``region``, or the digits of an international one written without ``+``.

    Ten digits or more with no ``+`` are the national number of ``region`` when they are
    written as that region writes its numbers and are as long as its example mobile or
    fixed-line number (a Chinese mobile ``15012345678``; any ten digits of a NANP region:
    ``2034176848`` is not Egyptian), else an international number's digits when those make
    a valid number, as 0.3.0 read them, else national. German national numbers begin with
    their trunk 0 and Italian mobiles have ten digits: ``33612345678`` in either is French,
    as Sinch and VoiceMeUp write a French number.
    """
    national: object | None
    try:
        national = pn.parse(number, region)
    except pn.NumberParseException:
        national = None
    compact = _FORMATTING.sub("", number.strip())
    if len(compact) < 10 or not compact.isascii() or not compact.isdigit():
        return national
    if national is not None and pn.is_valid_number(national):
        written = pn.format_number(national, pn.PhoneNumberFormat.NATIONAL)
        if region in _NANP_REGIONS or (
            re.sub(r"\D", "", written) == compact
            and len(pn.national_significant_number(national)) in _usual_lengths(pn, region)
        ):
            return national
    international: object
    try:
        international = pn.parse("+" + compact, None)
    except pn.NumberParseException:
        return national
    return international if pn.is_valid_number(international) else national


@functools.cache
def _usual_lengths(pn: ModuleType, region: str) -> frozenset[int]:
    """How many digits ``region``'s mobile and fixed-line numbers have (libphonenumber's
    example numbers): the length a number written without ``+`` has when it is national.
    Any digits of the right shape may make a valid national number of some regions (an
    Italian one of eleven digits), and read so, foreign numbers written without ``+`` were
    taken for local ones."""
    lengths = set()
    for kind in (pn.PhoneNumberType.MOBILE, pn.PhoneNumberType.FIXED_LINE):
        example = pn.example_number_for_type(region, kind)
        if example is not None:
            lengths.add(len(pn.national_significant_number(example)))
    return frozenset(lengths)


def _fallback_digits(number: str, region: str) -> str:
    """The E.164 digits (without ``+``) by the fallback rules."""
    compact = _FORMATTING.sub("", number.strip())
    if compact.startswith("+"):
        digits = compact[1:]
    elif region in _NANP_REGIONS and compact.startswith("011"):
        digits = compact[3:]
    elif region not in _NANP_REGIONS and compact.startswith("00"):
        digits = compact[2:]
    elif region in _NANP_REGIONS:
        if not compact.isdigit():
            raise ValueError(f"not a phone number: {number!r}")
        if len(compact) == 10:
            digits = "1" + compact
        elif (len(compact) == 11 and compact.startswith("1")) or len(compact) > 11:
            digits = compact  # longer than a NANP number: an international one
        else:
            raise ValueError(f"not a NANP number: {number!r}")
    else:
        raise ValueError(
            f"cannot read national number {number!r} for region {region!r} "
            "without the phonenumbers package"
        )
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"not a phone number: {number!r}")
    if digits.startswith("0") or not 7 <= len(digits) <= 15:
        raise ValueError(f"not an E.164 number: {number!r}")
    return digits
