"""Chinese text normalisation before speech: what the Mandarin voice should say for digits and symbols.

A voice reads characters, not digits: ``normalize_zh`` turns what an answer may contain
into the words a Mandarin speaker says for it.

- amounts: ``¥12.50`` / ``12.5元`` -> 十二点五元, ``$20`` -> 二十美元, ``2元`` -> 两元
- dates: ``2024年3月5日``, ``2024-03-05``, ``2024/3/5`` -> 二零二四年三月五日 (years digit by digit)
- times: ``9:30`` -> 九点三十分, ``17:00`` -> 十七点, ``9:05`` -> 九点零五分; ranges ``9:00-17:00`` -> ...到...
- percentages: ``3.5%`` -> 百分之三点五
- phone numbers (mobile, landline, 400/800, 5-digit hotlines) and long digit strings
  (card and account numbers): digit by digit, 1 read 幺 in phone numbers as people do
- cardinals: ``10`` -> 十, ``1005`` -> 一千零五, ``20,000`` -> 两万, ``3.14`` -> 三点一四
- Latin words in a Chinese sentence: common service words are said in Chinese
  (``email`` -> 电子邮件), acronyms and short words are spelled with the Chinese
  letter names (``app`` -> APP said "ei pi pi"), longer words are kept for the English
  voice (``keep_english=True``) or spelled.
"""

from __future__ import annotations

import re

DIGITS = "零一二三四五六七八九"
PHONE_DIGITS = "零幺二三四五六七八九"

_SMALL_UNITS = ["", "十", "百", "千"]
_BIG_UNITS = ["", "万", "亿", "万亿"]

# Measure words after which a bare 2 is 两 (两元, 两点, 两个), not 二.
_MEASURE = ("元", "块", "个", "位", "次", "天", "张", "种", "条", "件", "份", "周", "小时", "分钟", "台", "家", "笔",
            "本", "节", "门", "点", "年", "月份", "岁", "倍", "万", "千", "百", "亿", "公里", "米", "斤", "杯", "名")

# Latin words said in Chinese (lower case keys).
LEXICON = {
    "email": "电子邮件", "e-mail": "电子邮件", "wifi": "无线网络", "wi-fi": "无线网络", "ok": "好的",
    "online": "在线", "password": "密码", "visa": "维萨", "mastercard": "万事达卡", "paypal": "贝宝",
    "iphone": "爱疯", "android": "安卓", "wechat": "微信", "alipay": "支付宝",
}

# The Chinese names of Latin letters, in characters whose reading is unambiguous.
LETTERS = {
    "A": "诶", "B": "必", "C": "西", "D": "迪", "E": "伊", "F": "艾弗", "G": "吉", "H": "艾尺", "I": "爱",
    "J": "杰", "K": "开", "L": "艾乐", "M": "艾姆", "N": "恩", "O": "欧", "P": "批", "Q": "丘", "R": "阿尔",
    "S": "艾斯", "T": "踢", "U": "优", "V": "维", "W": "达不溜", "X": "艾克斯", "Y": "歪", "Z": "贼",
}

_SYMBOLS = {"&": "和", "+": "加", "=": "等于", "@": "艾特", "#": "井号", "*": "星号", "°C": "摄氏度", "℃": "摄氏度",
            "km": "公里", "kg": "公斤"}


def read_digits(s: str, *, phone: bool = False) -> str:
    """Digit by digit (``phone``: 1 is 幺, as in phone numbers)."""
    table = PHONE_DIGITS if phone else DIGITS
    return "".join(table[int(c)] for c in s if c.isdigit())


def _four(n: int) -> str:
    """0 < n < 10000 as Chinese, with 零 for inner gaps (1005 -> 一千零五)."""
    out = ""
    zero = False
    for i in range(3, -1, -1):
        d = n // 10**i % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += DIGITS[d] + _SMALL_UNITS[i]
    return out


def cardinal(n: int) -> str:
    """An integer in Chinese words: 10 -> 十, 110 -> 一百一十, 20000 -> 两万, 100000000 -> 一亿."""
    if n < 0:
        return "负" + cardinal(-n)
    if n == 0:
        return "零"
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_BIG_UNITS):
        return read_digits(str(sum(g * 10000**i for i, g in enumerate(groups))))
    out = ""
    need_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or g < 1000):
            out += "零"
        need_zero = False
        out += _four(g) + _BIG_UNITS[i]
    if out.startswith("一十"):
        out = out[1:]  # 十五, not 一十五
    # 两 before 万/亿 when the group is a bare 2 (两万, 两亿), as people say it
    out = re.sub(r"^二(?=[万亿])", "两", out)
    out = re.sub(r"(^|[万亿])二千", r"\1两千", out)
    return out


def decimal(s: str) -> str:
    """``3.14`` -> 三点一四, ``12`` -> 十二 (digits after the point one by one)."""
    s = s.replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        return cardinal(int(whole or "0")) + ("点" + read_digits(frac) if frac else "")
    return cardinal(int(s))


def _amount(s: str, *, liang: bool = True) -> str:
    """A number before a measure word: a bare 2 is 两; an amount's trailing zeros are not said (12.50 -> 十二点五)."""
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    words = decimal(s)
    return "两" if liang and words == "二" else words


def _year(s: str) -> str:
    return read_digits(s) + "年"


def _md(month: str, day: str | None) -> str:
    out = cardinal(int(month)) + "月"
    if day:
        out += cardinal(int(day)) + "日"
    return out


def _clock(h: str, m: str | None) -> str:
    hour = int(h)
    out = ("两" if hour == 2 else cardinal(hour)) + "点"
    if m is not None and int(m):
        out += ("零" if m.startswith("0") else "") + cardinal(int(m)) + "分"
    return out


_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"

# Order matters: the specific forms first, bare numbers last.
_RULES: list[tuple[re.Pattern[str], object]] = [
    # dates
    (re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"),
     lambda m: _year(m[1]) + _md(m[2], m[3])),
    (re.compile(r"(\d{4})年"), lambda m: _year(m[1])),
    (re.compile(r"(\d{1,2})月(\d{1,2})([日号])"), lambda m: cardinal(int(m[1])) + "月" + cardinal(int(m[2])) + m[3]),
    (re.compile(r"(\d{1,2})月"), lambda m: cardinal(int(m[1])) + "月"),
    # clock times and time ranges
    (re.compile(r"(?<!\d)(\d{1,2}):(\d{2})\s*[-~～至到]\s*(\d{1,2}):(\d{2})(?!\d)"),
     lambda m: _clock(m[1], m[2]) + "到" + _clock(m[3], m[4])),
    (re.compile(r"(?<!\d)(\d{1,2}):(\d{2})(?!\d)"), lambda m: _clock(m[1], m[2])),
    # phone numbers: mobile, 400/800 numbers, landlines with an area code, 5-digit hotlines
    (re.compile(r"(?<!\d)(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)"),
     lambda m: " ".join(read_digits(g, phone=True) for g in m.groups())),
    (re.compile(r"(?<!\d)([48]00)[- ]?(\d{3})[- ]?(\d{4})(?!\d)"),
     lambda m: " ".join(read_digits(g, phone=True) for g in m.groups())),
    (re.compile(r"(?<!\d)(0\d{2,3})-(\d{7,8})(?!\d)"),
     lambda m: " ".join(read_digits(g, phone=True) for g in m.groups())),
    (re.compile(r"(?<=热线|电话|拨打|号码)(\s*)(\d{3,})"), lambda m: read_digits(m[2], phone=True)),
    # money
    (re.compile(r"[¥￥]\s*(" + _NUM + r")"), lambda m: _amount(m[1]) + "元"),
    (re.compile(r"(?:RMB|CNY)\s*(" + _NUM + r")", re.I), lambda m: _amount(m[1]) + "元"),
    (re.compile(r"(?:US)?\$\s*(" + _NUM + r")"), lambda m: _amount(m[1]) + "美元"),
    (re.compile(r"(?:€|EUR\s*)(" + _NUM + r")"), lambda m: _amount(m[1]) + "欧元"),
    (re.compile(r"(" + _NUM + r")\s*(?:RMB|CNY)", re.I), lambda m: _amount(m[1]) + "元"),
    # percentages and ranges of numbers
    (re.compile(r"(" + _NUM + r")\s*%\s*[-~～至到]\s*(" + _NUM + r")\s*%"),
     lambda m: "百分之" + decimal(m[1]) + "到百分之" + decimal(m[2])),
    (re.compile(r"(" + _NUM + r")\s*[%％]"), lambda m: "百分之" + decimal(m[1])),
    (re.compile(r"(?<![\d-])(" + _NUM + r")\s*[-~～]\s*(" + _NUM + r")(?![\d-])"),
     lambda m: decimal(m[1]) + "到" + decimal(m[2])),
    # long digit strings (card, account, order numbers) and numbers with a leading zero: digit by digit
    (re.compile(r"(?<![\d.,])(0\d+|\d{7,})(?![\d.,])"), lambda m: read_digits(m[1])),
    # a number before a measure word (两元, 两个), then any number
    (re.compile(r"(" + _NUM + r")(?=\s*(?:" + "|".join(_MEASURE) + r"))"), lambda m: _amount(m[1])),
    (re.compile(_NUM), lambda m: decimal(m[0])),
]

_LATIN_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def spell(word: str) -> str:
    """A Latin word spelled with the Chinese letter names (``ATM`` -> 诶踢艾姆)."""
    return "".join(LETTERS[c] for c in word.upper() if c in LETTERS)


def _latin(m: re.Match[str], keep_english: bool) -> str:
    w = m[0]
    if w.lower() in LEXICON:
        return LEXICON[w.lower()]
    if w.isupper() or len(w) <= 4 or not keep_english:
        return spell(w)
    return " " + w + " "


def normalize_zh(text: str, *, keep_english: bool = False) -> str:
    """What a Mandarin voice should say for ``text`` (see the module docstring).

    ``keep_english``: long English words stay in Latin letters (for a voice that hands
    them to an English voice); otherwise every Latin word becomes Chinese or is spelled.
    """
    out = text.replace("\u3000", " ")
    for sym in ("°C", "℃"):
        out = out.replace(sym, _SYMBOLS[sym])
    out = re.sub(r"(?<=\d)\s*(km|kg)\b", lambda m: _SYMBOLS[m[1]], out)
    for pattern, repl in _RULES:
        out = pattern.sub(repl, out)  # type: ignore[arg-type]
    out = _LATIN_WORD.sub(lambda m: _latin(m, keep_english), out)
    for sym in ("&", "+", "=", "@", "#", "*"):
        out = out.replace(sym, _SYMBOLS[sym])
    # spaces only matter between Latin words; between characters they are pauses the voice would not make
    out = re.sub(r"\s+", " ", out).strip()
    out = re.sub(r"(?<=[^A-Za-z]) (?=[^A-Za-z])", "", out)
    return out


def is_chinese(text: str) -> bool:
    return bool(_HAN.search(text))
