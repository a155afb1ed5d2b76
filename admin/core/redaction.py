"""PII redaction applied to every stored turn (server side, whatever the client did).

Card numbers (13-19 digits passing the Luhn check), e-mail addresses, IBANs
and phone numbers become placeholders. The dialogue package may provide a
richer redactor later; this one is deliberately small and conservative.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\d[\d ()./-]{6,}\d(?!\w)")


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)


def _phone(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[PHONE]" if 7 <= len(digits) <= 15 else m.group(0)


def redact(text: str) -> tuple[str, int]:
    """Return ``text`` with PII replaced by placeholders, and how many were replaced."""
    count = 0

    def sub(pattern: re.Pattern[str], repl, s: str) -> str:  # noqa: ANN001
        nonlocal count
        out, n = pattern.subn(repl, s)
        # placeholders that kept the original (failed Luhn etc.) are not counted
        count += n - sum(1 for m in pattern.finditer(s) if (repl(m) if callable(repl) else repl) == m.group(0))
        return out

    text = sub(_EMAIL, "[EMAIL]", text)
    text = sub(_IBAN, "[IBAN]", text)
    text = sub(_CARD, _card, text)
    text = sub(_PHONE, _phone, text)
    return text, count


def redact_text(text: str) -> str:
    """``text`` with PII replaced by placeholders."""
    return redact(text)[0]
