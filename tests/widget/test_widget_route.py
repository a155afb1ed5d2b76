"""The public widget routes of the admin backend (no browser, no LiveKit): tokens only for
avatars enabled for the web, room and identity chosen by the server, rate limits, CORS, and the
widget's static files served at ``/``."""

from __future__ import annotations

import json
import os

import jwt
import pytest

API = "/api/v1/widget"


@pytest.fixture(scope="module")
def avatar_id(tmp_path_factory):
    data = tmp_path_factory.mktemp("widget-admin")
    keys = ("ADMIN_DATABASE_URL", "ADMIN_DATA_DIR", "ADMIN_CELERY_EAGER")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(ADMIN_DATABASE_URL=f"sqlite:///{data / 'admin.db'}", ADMIN_DATA_DIR=str(data),
                      ADMIN_CELERY_EAGER="true")
    from admin.cli import bootstrap
    from admin.core.config import get_settings

    get_settings.cache_clear()
    out = bootstrap(tenant_slug="widget-test", state_file=data / "state.json", admin_url="http://test",
                    avatar_name="Ava", engine="portrait")
    yield out["DH_AVATAR_ID"]
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


@pytest.fixture
def client(avatar_id, monkeypatch):
    from fastapi.testclient import TestClient

    from admin.main import create_app

    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", avatar_id)
    with TestClient(create_app()) as c:
        yield c


def test_token_for_an_enabled_avatar_dispatches_the_agent(client, avatar_id):
    r = client.post(f"{API}/token", json={"avatar_id": avatar_id, "room": "somebody-elses-call", "identity": "boss"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["room"] != "somebody-elses-call" and body["identity"] != "boss"
    claims = jwt.decode(body["token"], "secret", algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == body["identity"]
    assert claims["video"]["room"] == body["room"] and claims["video"]["roomJoin"] is True
    assert not claims["video"].get("roomAdmin") and not claims["video"].get("roomCreate")
    assert claims["exp"] - claims["nbf"] <= 900
    dispatch = claims["roomConfig"]["agents"][0]
    assert dispatch["agentName"] == "dh-agent"
    meta = json.loads(dispatch["metadata"])
    assert set(meta) == {"ticket"} and avatar_id not in body["token"]  # the caller can read nothing of the call
    from admin.core.db import session_scope
    from admin.models import CallTicket

    with session_scope() as db:  # the ticket names this avatar's call, for the agent to resolve
        assert db.get(CallTicket, meta["ticket"]).avatar_id == avatar_id


def test_avatars_not_enabled_look_missing(client, avatar_id, monkeypatch):
    assert client.post(f"{API}/token", json={"avatar_id": "nope"}).status_code == 404
    assert client.get(f"{API}/avatars/nope").status_code == 404
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", "")
    assert client.post(f"{API}/token", json={"avatar_id": avatar_id}).status_code == 404
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", "*")  # no longer "every avatar of every organisation"
    assert client.post(f"{API}/token", json={"avatar_id": avatar_id}).status_code == 404
    monkeypatch.setenv("ADMIN_WIDGET_AVATARS", "widget-test:*")  # every avatar of one organisation
    assert client.post(f"{API}/token", json={"avatar_id": avatar_id}).status_code == 201


def test_token_rate_limit_per_address(client, avatar_id, monkeypatch):
    monkeypatch.setenv("ADMIN_WIDGET_RATE_LIMIT", "2/60")
    codes = [client.post(f"{API}/token", json={"avatar_id": avatar_id}).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    r = client.post(f"{API}/token", json={"avatar_id": avatar_id})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_avatar_info_and_cors(client, avatar_id, monkeypatch):
    r = client.get(f"{API}/avatars/{avatar_id}", headers={"Origin": "https://bank.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers  # none configured
    monkeypatch.setenv("ADMIN_WIDGET_ORIGINS", "https://bank.example")
    r = client.get(f"{API}/avatars/{avatar_id}", headers={"Origin": "https://bank.example"})
    assert r.status_code == 200 and r.json()["name"] == "Ava" and r.json()["portrait_url"] is None
    assert r.headers["Access-Control-Allow-Origin"] == "https://bank.example"
    pre = client.options(f"{API}/token", headers={"Origin": "https://bank.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://bank.example"
    monkeypatch.setenv("ADMIN_WIDGET_ORIGINS", "https://school.example")
    r = client.get(f"{API}/avatars/{avatar_id}", headers={"Origin": "https://bank.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_static_widget_and_kiosk_are_served(client):
    js = client.get("/widget/dh-widget.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert len(js.content) > 50_000
    kiosk = client.get("/kiosk.html")
    assert kiosk.status_code == 200 and 'data-mode="kiosk"' in kiosk.text
    assert client.get("/widget/portrait.jpg").headers["content-type"] == "image/jpeg"
    assert client.get("/healthz").status_code == 200  # the API still wins over static files


def test_portrait_of_an_enabled_avatar_is_public(client, avatar_id, tmp_path):
    from PIL import Image

    from admin.core.db import session_scope
    from admin.models import Avatar

    png = tmp_path / "face.png"
    Image.new("RGB", (300, 300), (200, 160, 140)).save(png)
    with session_scope() as db:
        db.get(Avatar, avatar_id).portrait_path = str(png)
    try:
        info = client.get(f"{API}/avatars/{avatar_id}").json()
        assert info["portrait_url"].endswith(f"{API}/avatars/{avatar_id}/portrait")
        r = client.get(info["portrait_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == png.read_bytes()
        assert client.get(f"{API}/avatars/other/portrait").status_code == 404
    finally:
        with session_scope() as db:
            db.get(Avatar, avatar_id).portrait_path = None
