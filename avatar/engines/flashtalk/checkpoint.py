"""Strict, loud loading and saving of weights in the official file layouts.

The DiT ships as diffusers-style ``config.json`` + ``diffusion_pytorch_model.safetensors.index.json``
+ shards; the VAE, umT5 and CLIP ship as single ``.pth`` state dicts. Every loader here
compares the file's keys and shapes with the model and, on any difference, raises one
:class:`~avatar.engines.base.EngineError` naming the missing, unexpected and mismatched keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..base import EngineError

DIT_INDEX = "diffusion_pytorch_model.safetensors.index.json"
DIT_SINGLE = "diffusion_pytorch_model.safetensors"


def check_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str,
    ignore_prefixes: Iterable[str] = (),
) -> None:
    """Raise :class:`EngineError` unless ``state`` has exactly ``model``'s keys and shapes.

    Keys starting with one of ``ignore_prefixes`` are skipped (e.g. the CLIP text tower,
    which the engine never runs).
    """
    ignore = tuple(ignore_prefixes)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    got = {
        k: tuple(v.shape)
        for k, v in state.items()
        if not (ignore and k.startswith(ignore))
    }
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = sorted(
        f"{k}: file {list(got[k])} vs model {list(expected[k])}"
        for k in set(expected) & set(got)
        if tuple(expected[k]) != got[k]
    )
    if missing or unexpected or mismatched:
        lines = [f"{what}: the weights do not match the model built from its config."]
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 20 else ""
                )
                lines.append(f"{title} keys: {shown}")
        lines.append(
            "Check that the checkpoint and its config belong together (official FlashTalk files)."
        )
        raise EngineError("\n".join(lines))


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str,
    ignore_prefixes: Iterable[str] = (),
    assign: bool = False,
) -> None:
    """:func:`check_state_dict`, then load. ``assign`` adopts the file's tensors (meta-device models)."""
    check_state_dict(model, state, what=what, ignore_prefixes=ignore_prefixes)
    ignore = tuple(ignore_prefixes)
    kept = {k: v for k, v in state.items() if not (ignore and k.startswith(ignore))}
    model.load_state_dict(kept, strict=True, assign=assign)


def read_json(path: Path) -> dict:
    """Read a JSON file, turning a missing file into one clear :class:`EngineError`."""
    if not path.is_file():
        raise EngineError(
            f"{path} is missing; point checkpoint_dir at the official FlashTalk folder."
        )
    return json.loads(path.read_text())


def load_sharded_safetensors(
    folder: Path, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read the DiT weights: the index JSON and every shard it names (or the single-file form)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index_path = folder / DIT_INDEX
    if not index_path.is_file():
        single = folder / DIT_SINGLE
        if single.is_file():
            return load_file(str(single), device=str(device))
        raise EngineError(
            f"{index_path} is missing; point checkpoint_dir at the official FlashTalk folder."
        )
    weight_map: dict[str, str] = read_json(index_path)["weight_map"]
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = folder / shard
        if not shard_path.is_file():
            raise EngineError(
                f"shard {shard_path} named in {DIT_INDEX} is missing; the download is incomplete."
            )
        part = load_file(str(shard_path), device=str(device))
        for key in part:
            if weight_map.get(key) != shard:
                raise EngineError(
                    f"{shard} holds {key!r} but {DIT_INDEX} does not map it there."
                )
        state.update(part)
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise EngineError(
            f"{DIT_INDEX} names keys no shard holds: {', '.join(absent[:20])}"
        )
    return state


def save_sharded_safetensors(
    state: Mapping[str, torch.Tensor],
    folder: Path,
    *,
    max_shard_bytes: int = 10 * 2**30,
) -> list[str]:
    """Write ``state`` as ``diffusion_pytorch_model-0000N-of-0000M.safetensors`` + index JSON.

    Shards are filled in key order up to ``max_shard_bytes``; returns the shard file names.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        t = state[key].contiguous()
        n = t.numel() * t.element_size()
        if groups[-1] and size + n > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][key] = t
        size += n
    names = [
        f"diffusion_pytorch_model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        for i in range(len(groups))
    ]
    weight_map = {}
    total = 0
    for name, group in zip(names, groups):
        save_file(dict(group), str(folder / name), metadata={"format": "pt"})
        for key, t in group.items():
            weight_map[key] = name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / DIT_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
    return names


def load_pth(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` state dict (weights only, memory-mapped), with a clear error if absent."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(
            f"{path} is missing; put the official FlashTalk files in checkpoint_dir."
        )
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, Mapping):
        raise EngineError(f"{path} is not a state dict.")
    return dict(state)
