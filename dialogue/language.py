"""Which language the caller speaks: Chinese or English (the deployments' two languages)."""

from __future__ import annotations

import re

SUPPORTED = ("en", "zh")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str, *, default: str = "en", supported: tuple[str, ...] = SUPPORTED) -> str:
    """The language of an ASR transcript, as one of ``supported``.

    Script counting decides Chinese against Latin text (reliable even on two-word
    utterances, where statistical detectors guess); langdetect is consulted only
    for longer Latin text, to tell English from other languages that the
    deployment may list. Text with no letters at all (digits, "ok?") keeps ``default``.
    """
    han = len(_HAN.findall(text))
    latin = len(_LATIN.findall(text))
    if han == 0 and latin == 0:
        return default
    # A Han character weighs about as much as a short Latin word.
    if han * 3 >= latin and "zh" in supported:
        return "zh"
    if latin >= 20 and len(supported) > 2:
        try:
            from langdetect import DetectorFactory, detect

            DetectorFactory.seed = 0  # deterministic answers
            code = detect(text).split("-")[0]
            if code in supported:
                return code
        except Exception:  # langdetect raises on text with no features; keep the default
            pass
    return "en" if "en" in supported else default


def tts_language(text: str, default: str = "en") -> str:
    """The voice language for a piece of text to be spoken (same rules as the caller's)."""
    return detect_language(text, default=default)
