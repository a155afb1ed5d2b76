"""compose.yaml as deployed, without a Docker engine: the file is valid Compose, every service runs
natively with exactly the environment it gives (scripts/compose_native.py, in a network namespace
where the service names resolve), and a caller in a real browser is answered by the agent with the
avatar through the HTTPS front, with the session recorded. And each service refuses to start in
production with default secrets."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.paths import cache_root
from harness.devstack import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compose_native  # noqa: E402

SCHEMA = cache_root() / "compose-spec" / \
    "compose-spec-v2.10.0.json"
DOMAIN = "dh.test"


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    """A deployment's .env as scripts/init_env.sh writes it; LiveKit without STUN (no internet here)."""
    path = tmp_path_factory.mktemp("deploy") / ".env"
    subprocess.run(["bash", str(REPO / "scripts" / "init_env.sh"), DOMAIN, str(path)], check=True)
    text = path.read_text().replace("LIVEKIT_USE_EXTERNAL_IP=true", "LIVEKIT_USE_EXTERNAL_IP=false")
    # the standby agent and its watcher run too (profile failover): they start and stay healthy beside the call
    path.write_text(re.sub(r"(?m)^COMPOSE_PROFILES=cpu$", "COMPOSE_PROFILES=cpu,failover", text))
    return path


def validator():  # noqa: ANN201
    if not SCHEMA.is_file():
        pytest.fail(f"the Compose schema is missing at {SCHEMA}: run `make deploy-tools` (scripts/setup_deploy.sh)")
    import jsonschema_rs

    return jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))


def test_compose_file_follows_the_compose_specification(env_file):
    v = validator()
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    resolved = compose_native.load(REPO / "compose.yaml", compose_native.read_env_file(env_file))
    for doc in (raw, resolved):
        errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in v.iter_errors(doc)]
        assert not errors, errors
    broken = copy.deepcopy(resolved)
    broken["services"]["agent"]["depends_on"]["admin"]["condition"] = "when_ready"
    broken["services"]["agent"]["restart_policy"] = "always"
    assert len(list(v.iter_errors(broken))) >= 2  # the schema does catch a wrong file


def test_init_env_writes_secrets_every_service_accepts(env_file):
    from agent.production import MIN_SECRET_LENGTH

    env = compose_native.read_env_file(env_file)
    for name in ("LIVEKIT_API_SECRET", "ADMIN_SECRET_KEY", "ADMIN_AUDIT_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD",
                 "DH_AGENT_KEY"):
        assert len(env[name]) >= MIN_SECRET_LENGTH and "replace-me" not in env[name], name
    assert env["DH_AGENT_KEY"].startswith("dhk_")
    second = env_file.with_name("second.env")
    subprocess.run(["bash", str(REPO / "scripts" / "init_env.sh"), DOMAIN, str(second)], check=True)
    assert compose_native.read_env_file(second)["ADMIN_SECRET_KEY"] != env["ADMIN_SECRET_KEY"]  # fresh each time
    assert second.stat().st_mode & 0o777 == 0o600  # only its owner reads the secrets
    again = subprocess.run(["bash", str(REPO / "scripts" / "init_env.sh"), DOMAIN, str(second)], capture_output=True,
                           text=True)
    assert again.returncode == 1 and "exists" in again.stderr  # never overwrites a deployment's secrets


def test_a_missing_secret_stops_the_deployment_with_one_clear_error(env_file, tmp_path):
    lines = [ln for ln in env_file.read_text().splitlines() if not ln.startswith("REDIS_PASSWORD=")]
    (tmp_path / ".env").write_text("\n".join(lines))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "compose_native.py"), "config",
                          "--env-file", str(tmp_path / ".env")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "REDIS_PASSWORD" in out.stderr, out.stderr


@pytest.mark.parametrize("module", ["agent", "avatar"])
def test_workers_refuse_default_secrets_in_production(module, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "DH_", "AVATAR_", "AGENT_"))}
    env.update(DH_ENV="production", LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="secret",
               DH_ADMIN_URL="http://admin:8000", HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", module, "start"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode != 0 and len(lines) == 1, out.stderr[-2000:]
    for name in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "DH_ADMIN_API_KEY"):
        assert name in lines[0]
    assert lines[0].startswith("error: Refusing to start")


def test_the_failover_watcher_refuses_default_livekit_secrets_in_production(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "DH_", "AVATAR_", "AGENT_"))}
    env.update(DH_ENV="production", LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="secret",
               AGENT_WATCH_TARGETS="http://agent:9101", HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "agent", "watch"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode != 0 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("error: Refusing to start the failover watcher")
    assert "LIVEKIT_API_KEY" in lines[0] and "LIVEKIT_API_SECRET" in lines[0] and "DH_ADMIN" not in lines[0]


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory) -> Path:
    """The caller's fake microphone: silence, the question, a long silence (Chromium loops it)."""
    from agent.settings import AgentSettings
    from harness.caller import fake_microphone_wav, synthesize

    s = AgentSettings()
    pcm = synthesize("What are your opening hours?", s.model_path(s.piper_voice), steady=True)
    return fake_microphone_wav(tmp_path_factory.mktemp("wav") / "question.wav", pcm, lead=4, tail=25)


@pytest.mark.e2e
def test_the_deployment_answers_a_caller_through_the_https_front(env_file, question_wav, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test needs root for its network and mount namespaces (unshare --net --mount)")
    state, result = tmp_path / "state", tmp_path / "result.json"
    cmd = ["unshare", "--net", "--mount", "--propagation", "private", "--",
           sys.executable, str(REPO / "scripts" / "compose_native.py"), "up", "--env-file", str(env_file),
           "--state", str(state), "--",
           sys.executable, str(REPO / "tests" / "deploy" / "front_call.py"), str(env_file), str(state),
           str(question_wav), str(result)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    print(out.stdout[-3000:])
    seen = json.loads(result.read_text()) if result.exists() else {}
    print(json.dumps(seen, indent=2))
    if out.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                         for p in sorted((state / "logs").glob("*.log")))
        pytest.fail(f"exit {out.returncode}\n{out.stderr[-3000:]}\n{logs[-8000:]}")
    up = [ln for ln in out.stdout.splitlines() if ln.startswith("[compose-native] up:")]
    assert up and all(s in up[0] for s in ("caddy", "livekit", "postgres", "redis", "admin", "admin-worker",
                                           "agent", "avatar", "agent-standby", "agent-watch")), out.stdout
    watch = (state / "logs" / "agent-watch.log").read_text(errors="replace")
    assert "http://agent:9101 is up (dh-agent" in watch and "http://agent-standby:9103 is up (dh-agent-standby" in watch, watch
    assert seen["https_verified"] and seen["page_is_secure_context"] is True
    assert DOMAIN in json.dumps(seen["turn_tls_subject"])
    assert seen["frames_in_2s"] >= 20, seen
    agent_said = " ".join(c["text"].lower() for c in seen["captions"] if c["who"] == "agent")
    assert "monday" in agent_said
    assert seen["session"].get("id"), seen["session"]
    assert {"user", "assistant"} <= set(seen["session"]["speakers"]), seen["session"]
    m = seen["metrics"]
    assert all(m[k]["status"] == 200 for k in ("agent", "avatar", "admin", "livekit", "caddy")), m
    assert m["front"]["status"] == 404  # metrics are not served to the internet

    def value(service: str, prefix: str) -> float:
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in m[service]["lines"] if ln.startswith(prefix))

    assert value("agent", 'dh_calls_total{outcome="completed",service="agent"}') >= 1
    assert value("agent", 'dh_turn_stage_seconds_count{role="user",stage="transcription"}') >= 1
    assert value("avatar", "dh_avatar_frames_total") > 100
    assert value("admin", "admin_http_requests_total") > 0
    assert any(ln.startswith("livekit_") for ln in m["livekit"]["lines"]) and value("caddy", "caddy_http_requests_total") > 0
    # the Grafana dashboard only asks for metrics the services really export
    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "dh-agent.json").read_text())
    exported = {n for v in m.values() for n in v.get("names", [])}
    asked = {n for p in dashboard["panels"] for t in p["targets"]
             for n in re.findall(r"\b((?:dh|admin|caddy|livekit)_[a-z_]+)", t["expr"])}
    assert asked and asked <= exported, sorted(asked - exported)
