"""The voices an avatar can speak with, by name, and what a models folder has of them.

A voice name is what an operator picks in the admin (an avatar's ``voice``, a persona's
``settings.voices``):

* English: ``espeak`` (espeak-ng, always there) or a Piper voice under the models folder,
  ``piper/<voice>.onnx`` (with its ``.onnx.json``);
* Mandarin: ``espeak`` or a Mandarin voice folder under the models folder (``zh-baker``).

The admin validates names against :func:`catalogue` of its models folder when it has one;
the agent, which may run elsewhere, checks again when a call starts and speaks with the
deployment's default voice (one log line) when a named voice is not on its disk.
"""

from __future__ import annotations

from pathlib import Path

ESPEAK = "espeak"
ZH_ACOUSTIC = "fastspeech2-baker.tflite"  # agent.zh_tts.ACOUSTIC: the file a Mandarin voice folder must have


def catalogue(models_dir: Path) -> dict[str, list[str]]:
    """The voice names per language that ``models_dir`` holds (``espeak`` always)."""
    en, zh = [], []
    root = Path(models_dir)
    if (root / "piper").is_dir():
        en = sorted(f"piper/{p.name}" for p in (root / "piper").glob("*.onnx") if p.with_name(p.name + ".json").is_file())
    if root.is_dir():
        zh = sorted(p.name for p in root.iterdir() if (p / ZH_ACOUSTIC).is_file())
    return {"en": [*en, ESPEAK], "zh": [*zh, ESPEAK]}


def problem(language: str, name: str, models_dir: Path | None) -> str | None:
    """Why ``name`` is not a voice for ``language`` (None when it is). Without a models folder
    (the admin on another machine) any well-formed name passes; the agent checks it at call time."""
    if language not in ("en", "zh"):
        return f"there are voices for English (en) and Mandarin (zh) only, not '{language}'"
    if name == ESPEAK:
        return None
    well_formed = name.startswith("piper/") and name.endswith(".onnx") if language == "en" else "/" not in name
    if not well_formed or ".." in name:
        return (f"'{name}' is not a voice name: use espeak or "
                + ("piper/<voice>.onnx" if language == "en" else "a Mandarin voice folder such as zh-baker"))
    if models_dir is not None and Path(models_dir).is_dir():
        have = catalogue(Path(models_dir))[language]
        if name not in have:
            return f"no {language} voice '{name}' in the models folder; available: {', '.join(have)}"
    return None
