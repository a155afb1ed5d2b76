"""compose.yaml is shipped but cannot run here (no Docker engine): check it is coherent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_compose_services_run_modules_that_exist():
    doc = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = doc["services"]
    assert {"livekit", "postgres", "redis", "admin", "admin-worker", "agent", "avatar"} <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        cmd = svc.get("command")
        if isinstance(cmd, list) and cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None, f"{name} runs missing module {cmd[2]}"
            assert (REPO / "Dockerfile").is_file() and svc.get("build") == "."
    assert services["livekit"]["image"].endswith(":v1.13.5")


def test_compose_engine_settings_are_known():
    from avatar.engines import ENGINES
    from avatar.settings import AvatarSettings

    doc = yaml.safe_load((REPO / "compose.yaml").read_text())
    for name, svc in doc["services"].items():
        env = svc.get("environment", {})
        if "AVATAR_ENGINE" in env:
            assert env["AVATAR_ENGINE"] in ENGINES, name
        for key in env:
            if key.startswith("AVATAR_"):
                assert key[len("AVATAR_"):].lower() in AvatarSettings.model_fields, f"{name}: unknown {key}"
