"""Masking personal data in logged texts: e-mail addresses, 18-digit ID-card numbers, bank-card numbers
(16-19 digits passing the Luhn check) and mainland mobile numbers (1[3-9] + 9 digits).

Order matters: e-mails first (they may hold digits), then ID cards (18 digits, which would otherwise
also read as a card number), then cards, then phones. Digits include full-width ones (１３８…), which
Chinese text often uses.
"""

from __future__ import annotations

import re

# ASCII classes on purpose: \w also matches Chinese characters, which would swallow the words around an address
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# not inside a longer run of digits; the last character of an ID may be X
ID_CARD = re.compile(r"(?<!\d)\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXxＸｘ](?!\d)")
CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){15,18}(?!\d)")
PHONE = re.compile(r"(?<!\d)(?:(?:\+|00)?86[ -]?)?([1１][3-9３-９]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum bank cards carry (UnionPay, Visa, Mastercard)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", m.group(0))
    return f"[CARD ****{digits[-4:]}]" if luhn_ok(digits) else m.group(0)


def mask(text: str) -> str:
    """``text`` with personal data replaced by placeholders that keep only what helps debugging."""
    text = EMAIL.sub("[EMAIL]", text)
    text = ID_CARD.sub("[ID]", text)
    text = CARD.sub(_card, text)
    return PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
