"""Item 1: an anonymous caller could steal the agent key with a forged Host: header.

The token route put ``admin_url: http://<Host>`` into the dispatch metadata and the agent's
recorder sent its X-API-Key and every later transcript there. Now the metadata names no URL and
the agent's recorder takes its URL and key from its own settings only.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from .conftest import API, dispatch_metadata, make_avatar, serve


class Attacker:
    """An HTTP server that writes down every request it gets (the attacker's host)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.requests.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"applied": 1, "duplicates": 0}')

            def log_message(self, *a):  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def attacker():
    a = Attacker()
    yield a
    a.close()


@pytest.fixture
def agent_env(monkeypatch, tmp_path):
    """The agent's settings as a deployment sets them, and a fresh process-wide recorder."""
    import agent.recorder as recorder_mod

    monkeypatch.setattr(recorder_mod, "_process_recorder", None)
    monkeypatch.setenv("AGENT_SPOOL_DIR", str(tmp_path / "spool"))

    def configure(url: str = "", key: str = ""):
        from agent.settings import AgentSettings

        monkeypatch.setenv("DH_ADMIN_URL", url)
        monkeypatch.setenv("DH_ADMIN_API_KEY", key)
        return AgentSettings()

    yield configure
    rec = recorder_mod._process_recorder
    if rec is not None:
        rec.close(timeout=1)


def test_forged_host_does_not_reach_the_dispatch_metadata(client, tenant, monkeypatch):
    av = make_avatar(client, tenant)
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", av["id"])
    r = client.post(f"{API}/widget/token", json={"avatar_id": av["id"]}, headers={"Host": "attacker.example"})
    assert r.status_code == 201, r.text
    meta = dispatch_metadata(r.json()["token"])
    assert "admin_url" not in meta and "attacker" not in str(meta)
    r = client.post(f"{API}/tokens/livekit", json={"avatar_id": av["id"]}, headers={
        **tenant.headers["agent"], "Host": "attacker.example", "X-Forwarded-Host": "attacker.example"})
    assert r.status_code == 201 and "attacker" not in str(dispatch_metadata(r.json()["token"]))


def test_agent_never_sends_its_key_to_a_url_from_the_metadata(app, tenant, attacker, agent_env, monkeypatch, tmp_path):
    """The whole path: an anonymous widget token minted with Host: <attacker>, the agent's
    get_recorder with its metadata, one call recorded. Nothing reaches the attacker; the call lands
    in the admin configured by DH_ADMIN_URL, in the avatar's tenant."""
    import httpx

    from admin.core.db import session_scope
    from admin.models import CallSession, Turn
    from agent.call_config import resolve_call
    from agent.worker import get_recorder

    key = tenant.headers["agent"]["X-API-Key"]
    with serve(app) as admin_url:
        av = httpx.post(f"{admin_url}{API}/avatars", json={"name": "Ana", "engine": "simple"},
                        headers=tenant.headers["operator"]).json()
        monkeypatch.setenv("ADMIN_WIDGET_AVATARS", av["id"])
        host = attacker.url.removeprefix("http://")
        r = httpx.post(f"{admin_url}{API}/widget/token", json={"avatar_id": av["id"]}, headers={"Host": host})
        assert r.status_code == 201, r.text
        meta = dispatch_metadata(r.json()["token"])
        assert set(meta) == {"ticket"}  # nothing of the organisation is readable in the caller's token
        meta_with_url = {**meta, "admin_url": attacker.url}  # even an old admin's metadata is ignored

        # An agent without DH_ADMIN_URL neither resolves the call nor records it (it used to take the metadata's URL).
        cfg = asyncio.run(resolve_call(meta_with_url, admin_url="", api_key=key))
        assert cfg.grant is None and cfg.persona is None and cfg.reasons
        assert get_recorder(agent_env(url="", key=key), {**meta_with_url, **cfg.recorder_meta()}) is None

        cfg = asyncio.run(resolve_call(meta_with_url, admin_url=admin_url, api_key=key, cache_dir=tmp_path))
        rec = get_recorder(agent_env(url=admin_url, key=key), {**meta_with_url, **cfg.recorder_meta()})
        assert rec is not None
        sid = rec.start_session(session_id=cfg.session_id, avatar_id=cfg.avatar["id"], room="r")
        rec.add_turn(sid, "user", "my secret question")
        rec.end_session(sid)
        assert rec.close(timeout=10)
    assert attacker.requests == []
    with session_scope() as db:
        s = db.get(CallSession, cfg.session_id)
        assert s is not None and s.tenant_id == tenant.id
        assert list(db.scalars(select(Turn.text).where(Turn.session_id == s.id))) == ["my secret question"]
