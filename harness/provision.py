"""Set up an organisation's assistant through the admin API only, as an operator would in the
console: a persona (from a dialogue persona YAML), a knowledge base with its documents ingested,
and an avatar using both (with a portrait when given). Idempotent by name: run again, it
updates the persona, uploads only documents it has not uploaded, and keeps the avatar.

Used by the demo stack (:meth:`harness.devstack.Stack.start_admin`) and the two-organisation test.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

API = "/api/v1"
UPLOADABLE = (".txt", ".md", ".html", ".pdf", ".yaml")


def persona_body(persona_yaml: Path) -> dict[str, Any]:
    """The admin's persona fields for a dialogue persona file (what an operator types in the console)."""
    data = yaml.safe_load(persona_yaml.read_text(encoding="utf-8")) or {}
    lang = data.get("default_language", "en")
    greeting = dict(data.get("greeting") or {})
    settings: dict[str, Any] = {k: data[k] for k in ("tone", "allowed_topics", "max_unanswered", "phrases", "intents",
                                                      "languages") if data.get(k) is not None}
    settings["greeting"] = {k: v for k, v in greeting.items() if k != lang}
    settings["forbidden_topics"] = [{k: t[k] for k in ("name", "keywords", "examples", "reply") if k in t}
                                    for t in data.get("forbidden_topics") or []]
    settings["escalation"] = [{k: r[k] for k in ("reason", "keywords", "examples") if k in r}
                              for r in data.get("escalation") or []]
    return {"name": data.get("name", "Ava"), "language": lang, "greeting": greeting.get(lang), "settings": settings}


def knowledge_files(persona_yaml: Path) -> list[Path]:
    """The documents a persona file names (files, and the files of named folders)."""
    data = yaml.safe_load(persona_yaml.read_text(encoding="utf-8")) or {}
    out: list[Path] = []
    for rel in data.get("knowledge") or []:
        p = (persona_yaml.parent / rel).resolve()
        out += sorted(f for f in p.iterdir() if f.suffix in UPLOADABLE) if p.is_dir() else [p]
    return out


class Admin:
    """A thin client of the admin API with one credential (bearer token or API key)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 120.0) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/") + API, headers=headers, timeout=timeout)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def find(self, path: str, name: str) -> dict[str, Any] | None:
        return next((x for x in self.call("GET", path, params={"limit": 500}) if x.get("name") == name), None)


def sign_in(base_url: str, email: str, password: str) -> dict[str, str]:
    """Bearer-token headers for a user."""
    r = httpx.post(base_url.rstrip("/") + f"{API}/login/access-token", data={"username": email, "password": password},
                   timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def admin_call(values: dict[str, str]) -> dict[str, Any]:
    """A call set up by the admin's token route, the production path (``values``: the bootstrap values of
    :meth:`harness.devstack.Stack.start_admin`): the caller's token, room and session id."""
    r = httpx.post(values["DH_ADMIN_URL"].rstrip("/") + f"{API}/tokens/livekit", json={"avatar_id": values["DH_AVATAR_ID"]},
                   headers={"X-API-Key": values["DH_ADMIN_API_KEY"]}, timeout=30)
    r.raise_for_status()
    return r.json()


def provision(base_url: str, headers: dict[str, str], persona_yaml: Path, *, avatar_id: str | None = None,
              avatar_name: str | None = None, portrait: Path | None = None, engine: str = "portrait",
              timeout: float = 300.0) -> dict[str, str]:
    """Persona, knowledge base (documents ingested) and avatar of one organisation; returns their ids."""
    body = persona_body(persona_yaml)
    with Admin(base_url, headers) as api:
        kb_name = f"{body['name']} knowledge"
        kb = api.find("/knowledge-bases", kb_name) or api.call(
            "POST", "/knowledge-bases", json={"name": kb_name, "language": body["language"]})
        have = {d["sha256"] for d in api.call("GET", f"/knowledge-bases/{kb['id']}/documents", params={"limit": 500})}
        for f in knowledge_files(persona_yaml):
            data = f.read_bytes()
            if hashlib.sha256(data).hexdigest() not in have:
                api.call("POST", f"/knowledge-bases/{kb['id']}/documents", files={"file": (f.name, data)})
        _wait_ingested(api, kb["id"], timeout)
        persona = api.find("/personas", body["name"])
        body["knowledge_base_id"] = kb["id"]
        persona = (api.call("PATCH", f"/personas/{persona['id']}", json=body) if persona
                   else api.call("POST", "/personas", json=body))
        if avatar_id is None:
            name = avatar_name or body["name"]
            avatar = api.find("/avatars", name) or api.call("POST", "/avatars", json={"name": name, "engine": engine})
            avatar_id = avatar["id"]
        api.call("PATCH", f"/avatars/{avatar_id}", json={"persona_id": persona["id"]})
        if portrait is not None:
            api.call("POST", f"/avatars/{avatar_id}/portrait", files={"file": (portrait.name, portrait.read_bytes())})
            _wait_prepared(api, avatar_id, timeout)
    return {"persona_id": persona["id"], "knowledge_base_id": kb["id"], "avatar_id": avatar_id}


def _wait_ingested(api: Admin, kb_id: str, timeout: float) -> None:
    start = time.monotonic()
    deadline = start + timeout
    while True:
        docs = api.call("GET", f"/knowledge-bases/{kb_id}/documents", params={"limit": 500})
        failed = [d for d in docs if d["status"] == "failed"]
        if failed:
            raise RuntimeError(f"ingestion failed: {[(d['filename'], d['status_detail']) for d in failed]}")
        kb = api.call("GET", f"/knowledge-bases/{kb_id}")
        if docs and all(d["status"] == "ready" for d in docs):
            if kb.get("index_chunks"):
                return
            if kb.get("index_updated_at") or time.monotonic() > start + 30:
                raise RuntimeError(f"knowledge base {kb_id}: documents ingested but no index was built "
                                   "(is ADMIN_KNOWLEDGE_INGESTOR the dialogue ingestor?)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"knowledge base {kb_id} not ingested in {timeout:.0f} s: {[d['status'] for d in docs]}")
        time.sleep(0.5)


def _wait_prepared(api: Admin, avatar_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        a = api.call("GET", f"/avatars/{avatar_id}")
        if a["status"] == "ready":
            return
        if a["status"] == "failed":
            raise RuntimeError(f"avatar preparation failed: {a.get('status_detail')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"avatar {avatar_id} not prepared in {timeout:.0f} s ({a['status']})")
        time.sleep(0.5)
