"""Item 8: devkey/secret and change-me-in-production were never refused, and compose published
LiveKit's port with them. Now ADMIN_ENV=production refuses default or short secrets at start-up with
one clear error, and compose has no default secrets at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STRONG = {
    "ADMIN_SECRET_KEY": "s" * 40, "ADMIN_AUDIT_KEY": "a" * 40,
    "LIVEKIT_API_KEY": "APIk3yForThisDeployment", "LIVEKIT_API_SECRET": "l" * 40,
}


@pytest.fixture
def production(monkeypatch):
    """ADMIN_ENV=production with the given environment; the settings cache is restored after."""
    from admin.core.config import get_settings

    def set_env(**env):  # noqa: ANN003
        monkeypatch.setenv("ADMIN_ENV", "production")
        for k in ("ADMIN_SECRET_KEY", "ADMIN_AUDIT_KEY", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET",
                  "ADMIN_LIVEKIT_API_KEY", "ADMIN_LIVEKIT_API_SECRET"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def test_production_refuses_the_shipped_defaults(production):
    from admin.core.config import InsecureConfigurationError
    from admin.main import create_app

    production()
    with pytest.raises(InsecureConfigurationError) as err:
        create_app()
    msg = str(err.value)
    for name in ("ADMIN_SECRET_KEY", "ADMIN_AUDIT_KEY", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        assert name in msg
    assert len(msg.splitlines()) == 1


@pytest.mark.parametrize("weak", [
    {"LIVEKIT_API_KEY": "devkey"}, {"LIVEKIT_API_SECRET": "secret"},
    {"ADMIN_SECRET_KEY": "change-me-in-production"}, {"ADMIN_SECRET_KEY": "short-but-random-9f8"},
    {"ADMIN_AUDIT_KEY": ""}, {"ADMIN_AUDIT_KEY": "s" * 40},  # the same as ADMIN_SECRET_KEY
])
def test_production_refuses_each_weak_secret(production, weak):
    from admin.core.config import InsecureConfigurationError
    from admin.main import create_app

    production(**{**STRONG, **weak})
    with pytest.raises(InsecureConfigurationError):
        create_app()


def test_production_starts_with_strong_secrets(production):
    from admin.main import create_app

    production(**STRONG)
    assert create_app() is not None


def test_serve_exits_with_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "LIVEKIT_"))}
    env.update(ADMIN_ENV="production", ADMIN_DATA_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "admin", "serve", "--no-migrate", "--port", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Refusing to start the admin in production"), out.stderr
    assert "Traceback" not in out.stderr


def test_compose_has_no_default_secrets():
    text = (ROOT / "compose.yaml").read_text()
    assert "devkey" not in text and "change-me" not in text
    # no ${VAR:-default} for a secret (an empty default, "not configured", is allowed)
    assert not re.search(r"\$\{[A-Z_]*(SECRET|KEY|PASSWORD)[A-Z_]*:-[^}]", text)
    doc = yaml.safe_load(text)
    services = doc["services"]
    livekit_cmd = " ".join(services["livekit"]["command"])
    assert "${LIVEKIT_API_KEY:?" in livekit_cmd and "${LIVEKIT_API_SECRET:?" in livekit_cmd
    admin_env = services["admin"]["environment"]
    for name, svc in services.items():  # every service of this project's image runs in production mode
        if "build" in svc:
            assert svc["environment"]["DH_ENV"] == "production", name
    assert admin_env["ADMIN_SECRET_KEY"].startswith("${ADMIN_SECRET_KEY:?")
    assert admin_env["ADMIN_AUDIT_KEY"].startswith("${ADMIN_AUDIT_KEY:?")
    assert admin_env["LIVEKIT_API_SECRET"].startswith("${LIVEKIT_API_SECRET:?")
    # the agent records calls where its own settings say, not where a token says
    assert services["agent"]["environment"]["DH_ADMIN_URL"] == "http://admin:8000"
    assert services["agent"]["environment"]["DH_ADMIN_API_KEY"].startswith("${DH_AGENT_KEY:?")
