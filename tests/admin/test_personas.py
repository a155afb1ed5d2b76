"""Personas CRUD."""

API = "/api/v1"


def test_crud(client, tenant):
    h = tenant.headers["operator"]
    p = client.post(f"{API}/personas", json={"name": "Clerk", "instructions": "Be brief.", "language": "de",
                                             "disclosure": "I am a virtual assistant."}, headers=h)
    assert p.status_code == 201, p.text
    pid = p.json()["id"]
    assert client.get(f"{API}/personas/{pid}", headers=tenant.headers["agent"]).json()["language"] == "de"
    assert client.patch(f"{API}/personas/{pid}", json={"greeting": "Hallo!"}, headers=h).json()["greeting"] == "Hallo!"
    av = client.post(f"{API}/avatars", json={"name": "A", "engine": "simple", "persona_id": pid}, headers=h).json()
    assert client.delete(f"{API}/personas/{pid}", headers=h).status_code == 204
    assert client.get(f"{API}/avatars/{av['id']}", headers=h).json()["persona_id"] is None


def test_unknown_knowledge_base_is_refused(client, tenant):
    r = client.post(f"{API}/personas", json={"name": "x", "knowledge_base_id": "nope"},
                    headers=tenant.headers["operator"])
    assert r.status_code == 404
