"""Per-avatar voices in the admin: names checked against the models folder, handed to the call."""

from __future__ import annotations


def test_the_admin_refuses_a_voice_the_models_folder_lacks(client, tenant, monkeypatch, agent_settings):
    from admin.core.config import get_settings

    monkeypatch.setattr(get_settings(), "models_dir", agent_settings.models_dir)
    h = tenant.headers["operator"]
    r = client.post("/api/v1/avatars", json={"name": "A", "voice": "piper/en_GB-nobody-low.onnx"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("voice: no en voice"), r.text
    av = client.post("/api/v1/avatars", json={"name": "A", "voice": "espeak"}, headers=h)
    assert av.status_code == 201, av.text
    r = client.post("/api/v1/personas", json={"name": "P", "settings": {"voices": {"zh": "zh-nobody"}}}, headers=h)
    assert r.status_code == 422 and "settings.voices.zh" in r.json()["detail"], r.text
    p = client.post("/api/v1/personas", json={"name": "P", "settings": {"voices": {"zh": "espeak"}}}, headers=h)
    assert p.status_code == 201, p.text
    client.patch(f"/api/v1/avatars/{av.json()['id']}", json={"persona_id": p.json()["id"]}, headers=h)
    tok = client.post("/api/v1/tokens/livekit", json={"avatar_id": av.json()["id"]}, headers=h).json()
    from tests.security.conftest import dispatch_metadata

    ticket = dispatch_metadata(tok["token"])["ticket"]
    cfg = client.get(f"/api/v1/agent/calls/{ticket}", headers=tenant.headers["agent"]).json()
    assert cfg["voices"] == {"en": "espeak", "zh": "espeak"}  # the avatar's English voice, the persona's Mandarin one
