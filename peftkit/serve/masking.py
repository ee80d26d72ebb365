"""Masking personal data in logged texts: e-mail addresses, ID-card numbers (18 digits, and the old 15-digit
cards), bank-card numbers (16-19 digits passing the Luhn check), mainland mobile numbers (1[3-9] + 9 digits)
and landlines with their area code (``010-62345678``, ``0755-12345678``, ``(021)64381234``, ``+86 10 6234 5678``).

Order matters: e-mails first (they may hold digits), then ID cards (18 digits, which would otherwise also read
as a card number), then cards, then mobiles, then landlines; a masked stretch is out of reach of the rules
after it. Full-width digits (１３８…, which Chinese text often uses), Ｘ, ＋, －, （） and the ideographic space
read as their ASCII selves, and the placeholders keep the original characters they show.

Ordinary numbers stay: years, prices, quantities and order numbers do not start with an area code, a mobile
prefix or a province code followed by a valid date, or fail the Luhn check.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# one character for one, so a match's span in the matched copy is its span in the original text
_NARROW = str.maketrans("０１２３４５６７８９Ｘｘ＋－（）\u3000", "0123456789Xx+-() ")

# ASCII classes on purpose: \w also matches Chinese characters, which would swallow the words around an address
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DATE = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # MMDD
# not inside a longer run of digits; the last character of an 18-digit ID may be X
ID_CARD = re.compile(rf"(?<!\d)\d{{6}}(?:18|19|20)\d{{2}}{_DATE}\d{{3}}[\dXx](?!\d)", re.ASCII)
# the 15-digit cards issued until 2004: region (its first two digits a province code), YYMMDD, 3 digits
ID_CARD_15 = re.compile(
    rf"(?<!\d)(?:1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5])\d{{4}}\d{{2}}{_DATE}\d{{3}}(?!\d)", re.ASCII
)
CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){15,18}(?!\d)", re.ASCII)
PHONE = re.compile(r"(?<!\d)(?:(?:\+|00)?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)", re.ASCII)
_AREA = r"0(?:10|2\d|[3-9]\d{2})"  # 010, 02X, then the 4-digit codes 03XX-09XX
_AREA_INTL = r"(?:10|2\d|[3-9]\d{2})"  # the same after +86, without the trunk 0
LANDLINE = re.compile(
    r"(?<![\d+])(?:"
    rf"(?:\+|00)86[ -]?(?:\(0?{_AREA_INTL}\)|0?{_AREA_INTL})[ -]?"  # +86 10 ..., 0086-(0)755-...
    rf"|\({_AREA}\)[ -]?|{_AREA}[ -]"  # (010)..., 010-..., 0755 ...
    r")(\d{3,4}[ -]?\d{4})(?!\d)"  # a local number of 7 or 8 digits
    # written together: the local number must start 2-9 (mainland local numbers do), so 0 + 10-11 digits of
    # something else is less likely to be taken for one
    rf"|(?<!\d){_AREA}([2-9]\d{{6,7}})(?!\d)",
    re.ASCII,
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum bank cards carry (UnionPay, Visa, Mastercard)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# each rule: the match (in the narrowed copy) and the original text -> the placeholder, or None to keep it
def _card(m: re.Match[str], text: str) -> str | None:
    digits = re.sub(r"[ -]", "", m.group(0))
    shown = re.sub(r"[ \-－\u3000]", "", text[m.start() : m.end()])[-4:]
    return f"[CARD ****{shown}]" if luhn_ok(digits) else None


def _phone(m: re.Match[str], text: str) -> str:
    return f"{text[m.start(1) : m.end(1)]}****{text[m.start(3) : m.end(3)]}"


def _landline(m: re.Match[str], text: str) -> str:
    g = 1 if m.group(1) is not None else 2  # which alternative matched: its local number's group
    return f"{text[m.start() : m.start(g)]}****{text[m.end(g) - 4 : m.end(g)]}"


RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], str | None]]] = [
    (EMAIL, lambda m, t: "[EMAIL]"),
    (ID_CARD, lambda m, t: "[ID]"),
    (ID_CARD_15, lambda m, t: "[ID]"),
    (CARD, _card),
    (PHONE, _phone),
    (LANDLINE, _landline),
]


def mask(text: str) -> str:
    """``text`` with personal data replaced by placeholders that keep only what helps debugging."""
    narrow = text.translate(_NARROW)
    found: list[tuple[int, int, str]] = []
    for pattern, rule in RULES:

        def hide(m: re.Match[str], rule: Callable[[re.Match[str], str], str | None] = rule) -> str:
            shown = rule(m, text)
            if shown is None:
                return m.group(0)
            found.append((m.start(), m.end(), shown))
            return "\0" * (m.end() - m.start())  # same length, no digits: later rules neither match nor see it

        narrow = pattern.sub(hide, narrow)
    out, at = [], 0
    for start, end, shown in sorted(found):
        out += [text[at:start], shown]
        at = end
    return "".join(out) + text[at:]
