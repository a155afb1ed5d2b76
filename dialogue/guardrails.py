"""Guardrails: PII redaction for storage and logs, safe speech, prompt-injection detection.

``redact(text)`` is the one function everything stored or logged goes through
(the admin backend imports it too). ``speakable(text)`` makes text safe to read
aloud: no full card number is ever spoken.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

# ---------------------------------------------------------------- normalisation
# ASR writes digits in several ways; PII patterns match only ASCII digits, so
# spelled-out and Chinese digit runs are turned into ASCII before matching.
_ZH_DIGITS = {"零": "0", "〇": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
              "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_ZH_RUN = re.compile("[" + "".join(_ZH_DIGITS) + "]{6,}")
_EN_DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_EN_RUN = re.compile(r"\b(?:(?:" + "|".join(_EN_DIGITS) + r")[\s,-]+){6,}(?:" + "|".join(_EN_DIGITS) + r")\b", re.I)


def normalise_digits(text: str) -> str:
    """Spelled-out digit runs ("four one one one ...", "一三八...") as ASCII digits.

    Only runs of seven or more digits are rewritten, so "nine to five" stays words.
    """
    text = _ZH_RUN.sub(lambda m: "".join(_ZH_DIGITS[c] for c in m.group()), text)
    return _EN_RUN.sub(lambda m: "".join(_EN_DIGITS[w.lower()] for w in re.findall(r"[a-z]+", m.group(), re.I)), text)


# ---------------------------------------------------------------- validators
def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    s = re.sub(r"\s", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def cn_id_valid(value: str) -> bool:
    """GB 11643 checksum of an 18-character PRC resident identity number."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    if not re.fullmatch(r"\d{17}[\dXx]", value):
        return False
    check = "10X98765432"[sum(int(c) * w for c, w in zip(value[:17], weights)) % 11]
    return value[17].upper() == check


# ---------------------------------------------------------------- detection
@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data found in a text."""

    kind: str  # card, iban, email, phone, cn_id, ssn, uk_nino, it_cf, es_dni, number
    start: int
    end: int
    value: str


_NB = r"(?<![0-9A-Za-z])"  # no \b: Han characters count as word characters in Python
_NA = r"(?![0-9A-Za-z])"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("iban", re.compile(_NB + r"[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?" + _NA)),
    ("card", re.compile(_NB + r"\d(?:[ .-]?\d){12,18}" + _NA)),  # 4111 1111…, 4111-1111…, 4111.1111…
    ("cn_id", re.compile(_NB + r"\d{17}[\dXx]" + _NA)),
    ("ssn", re.compile(_NB + r"\d{3}-\d{2}-\d{4}" + _NA)),
    ("uk_nino", re.compile(_NB + r"[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]" + _NA)),
    ("it_cf", re.compile(_NB + r"[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]" + _NA)),
    ("es_dni", re.compile(_NB + r"[XYZ]?\d{7,8}-?[A-Z]" + _NA)),
    # Card-length digit groups that fail the Luhn check: still private (account numbers).
    ("number", re.compile(r"(?<![0-9A-Za-z+])\d(?:[ .-]?\d){11,}" + _NA)),
    ("phone", re.compile(r"(?<![0-9A-Za-z+])\+?\d[\d\s().-]{5,18}\d" + _NA)),
    # Any other long digit run: account, customer and passport numbers are private too.
    ("number", re.compile(_NB + r"\d{9,}" + _NA)),
]


def find_pii(text: str) -> list[PiiMatch]:
    """Personal data in ``text`` (positions refer to the digit-normalised text)."""
    text = normalise_digits(text)
    found: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            s, e, v = m.start(), m.end(), m.group()
            if any(s < te and ts < e for ts, te in taken):
                continue
            digits = re.sub(r"\D", "", v)
            if kind == "card" and not luhn_valid(digits):
                continue  # leave it to the phone / number patterns
            if kind == "iban" and not iban_valid(v):
                continue
            if kind == "cn_id" and not cn_id_valid(v) and not re.fullmatch(r"\d{6}(19|20)\d{2}(0[1-9]|1[0-2])\d{5}[\dXx]", v):
                continue
            if kind == "phone" and not 7 <= len(digits) <= 15:
                continue
            if kind == "phone" and re.fullmatch(r"\d{1,2}[.:]\d{2}", v.strip()):
                continue
            found.append(PiiMatch(kind, s, e, v))
            taken.append((s, e))
    return sorted(found, key=lambda p: p.start)


def contains_pii(text: str) -> bool:
    """Whether ``text`` holds any personal data that :func:`redact` would remove."""
    return bool(find_pii(text))


def redact(text: str) -> str:
    """``text`` with every piece of personal data replaced by a tag such as ``[CARD]``.

    Use on everything stored or logged: transcripts, turn records, tool
    arguments, tickets. Card numbers are recognised by the Luhn check, IBANs by
    mod-97, PRC ID numbers by their checksum or date layout; phone numbers,
    emails, US SSN, UK NI, Italian codice fiscale, Spanish DNI/NIE and any other
    run of nine or more digits are removed too.
    """
    if not text:
        return text
    norm = normalise_digits(text)
    out, last = [], 0
    for p in find_pii(norm):
        out.append(norm[last:p.start])
        out.append(f"[{p.kind.upper()}]")
        last = p.end
    out.append(norm[last:])
    return "".join(out)


def redact_obj(obj):
    """:func:`redact` applied to every string inside dicts, lists and tuples (tool arguments, JSON)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):  # keys too: a client may key a map by phone number
        return {(redact(k) if isinstance(k, str) else k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def speakable(text: str, language: str = "en") -> str:
    """``text`` made safe to read aloud: card numbers become "the card ending in 1234".

    Other personal data is replaced with a neutral phrase; the agent never reads
    back an identity number, IBAN or email it was told.
    """
    norm = normalise_digits(text)
    out, last = [], 0
    for p in find_pii(norm):
        out.append(norm[last:p.start])
        digits = re.sub(r"\D", "", p.value)
        if p.kind == "card":
            out.append(f"尾号{digits[-4:]}的卡" if language == "zh" else f"the card ending in {digits[-4:]}")
        elif p.kind == "phone":
            out.append(f"尾号{digits[-4:]}的电话" if language == "zh" else f"the number ending in {digits[-4:]}")
        else:
            out.append("（已隐去）" if language == "zh" else "(withheld)")
        last = p.end
    out.append(norm[last:])
    return "".join(out)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts PII from every record's message before it is written.

    Attach it to handlers (``handler.addFilter(RedactingFilter())``) so that no
    transcript fragment reaches a log file unredacted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            return True
        record.msg, record.args = redact(msg), None
        return True


def install_log_redaction(*logger_names: str) -> None:
    """Add :class:`RedactingFilter` to the handlers of the given loggers (root when none)."""
    names = logger_names or ("",)
    for name in names:
        lg = logging.getLogger(name)
        lg.addFilter(RedactingFilter())
        for h in lg.handlers:
            h.addFilter(RedactingFilter())


# ---------------------------------------------------------------- prompt injection
_INJECTION = [
    re.compile(p, re.I)
    for p in (
        r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules?|prompts?|guidelines?|polic(y|ies)|restrictions?|programming)\b",
        r"\byou are now\b",
        r"\bfrom now on,? you\b",
        r"\b(act|behave|respond) as (if you were |an? )?(?!a customer)",
        r"\bpretend (to be|you are|that)\b",
        r"\b(system|developer) (prompt|message|mode)\b",
        r"\bjailbreak|\bDAN\b|do anything now",
        r"\bnew (instructions|rules|persona)\b",
        r"\breveal (your|the) (prompt|instructions)\b",
        r"忽略|无视|忘记|不要遵守|不用遵守|绕过",
        r"你现在是|从现在开始你|假装你是|假装成|扮演",
        r"系统提示|开发者模式|提示词|越狱",
    )
]
# The Chinese verbs above are common words; they count only next to a rule-like noun.
_ZH_RULE_WORDS = re.compile(r"指令|指示|规则|设定|提示|要求|限制|身份|角色|人设|程序")
_ZH_VERBS = re.compile(r"忽略|无视|忘记|不要遵守|不用遵守|绕过")


def is_prompt_injection(text: str) -> bool:
    """Whether the caller's words try to rewrite the agent's instructions.

    Such a turn is answered with a polite refusal and the persona's rules stay
    in force; the words are also never passed to an LLM as instructions.
    """
    for pattern in _INJECTION:
        m = pattern.search(text)
        if not m:
            continue
        if _ZH_VERBS.fullmatch(m.group()) and not _ZH_RULE_WORDS.search(text):
            continue
        return True
    return False
