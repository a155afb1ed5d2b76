"""The console's sources against the backend and its committed bundle (no browser, no node needed):
every API call the console makes exists in the backend's OpenAPI document with that method; every
UI text key exists in English and Chinese; the bundle in admin/static/console was built from the
sources as they are (and, where console/node_modules is installed, rebuilding gives the same bytes)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from harness.devstack import REPO

SRC = REPO / "console" / "src"
BUNDLE = REPO / "admin" / "static" / "console"
CALL = re.compile(r"api\.(get|post|patch|del|upload|form|stream)(?:<[^>]*>)?\(\s*(['`])(/[^'`]*)\2")
METHOD = {"get": "get", "post": "post", "patch": "patch", "del": "delete", "upload": "post", "form": "post",
          "stream": "get"}  # stream: an EventSource (server-sent events)


def _sources() -> str:
    return "\n".join(p.read_text() for p in sorted(SRC.rglob("*.ts")))


def _calls() -> set[tuple[str, str]]:
    return {(METHOD[m], re.sub(r"\$\{[^}]+\}", "{}", path)) for m, _, path in CALL.findall(_sources())}


def test_every_api_call_of_the_console_is_in_the_openapi_document():
    from admin.main import create_app

    spec = create_app().openapi()
    prefix = "/api/v1"
    paths = {(method, re.sub(r"\{[^}]+\}", "{}", p.removeprefix(prefix)))
             for p, ops in spec["paths"].items() for method in ops}
    calls = _calls()
    assert len(calls) >= 30, calls  # the regex still sees the calls
    missing = sorted(calls - paths)
    assert not missing, f"the console calls routes the API does not have: {missing}"


def test_the_contract_check_would_catch_a_wrong_path():
    assert ("get", "/avatars/{}") in _calls()
    assert ("get", "/handoffs/stream") in _calls()  # the EventSource too
    fake = 'api.get<Avatar>(`/avatar/${id}`)'
    assert {(METHOD[m], re.sub(r"\$\{[^}]+\}", "{}", p)) for m, _, p in CALL.findall(fake)} == {("get", "/avatar/{}")}


def _dicts() -> dict[str, set[str]]:
    text = (SRC / "i18n.ts").read_text()
    out = {}
    for name in ("en", "zh"):
        body = re.search(rf"const {name}: Dict = \{{(.*?)\n\}};", text, re.S).group(1)
        out[name] = set(re.findall(r"'([\w.]+)':", body))
    return out


def test_every_ui_text_exists_in_english_and_chinese():
    d = _dicts()
    assert d["en"] == d["zh"], {"only en": d["en"] - d["zh"], "only zh": d["zh"] - d["en"]}
    src = _sources()
    used = set(re.findall(r"\bt\('([\w.]+)'", src)) | set(re.findall(r"'((?:nav|sessions|audit|admin|signin|field|handoffs)\.\w+)'", src))
    assert used - {"sessions.csv"} - d["en"] == set()  # (sessions.csv: the export's file name)
    # keys built at run time: every value they can take
    for prefix, values in {"status": ["pending", "running", "ready", "failed"], "role": ["admin", "operator", "viewer", "agent", "worker"],
                           "outcome": ["completed", "abandoned", "escalated", "escalated_handled", "escalated_unanswered",
                                       "failed", "open"], "engine": ["simple", "portrait", "flashtalk"],
                           "speaker": ["user", "assistant", "system", "human_agent"], "knowledge.method": ["hybrid", "keywords"],
                           "lang": ["en", "zh"], "handoffs.status": ["waiting", "accepted", "returned", "unanswered"],
                           "handoffs.stream": ["connecting", "live", "reconnecting", "closed"],
                           "decision": ["answer", "no_answer", "refuse_scope", "refuse_injection", "escalate", "ticket",
                                        "end_call", "tool", "tool_result", "offer_declined", "llm_error", "not_heard",
                                        "pii_warning"]}.items():
        assert {f"{prefix}.{v}" for v in values} <= d["en"]


def test_every_session_outcome_has_a_name_and_an_insights_series():
    import typing

    from admin.api.routes.console import OUTCOMES
    from admin.schemas import SessionEnd

    literal = next(a for a in typing.get_args(SessionEnd.model_fields["outcome"].annotation) if a is not type(None))
    outcomes = set(typing.get_args(literal))
    assert outcomes == set(OUTCOMES)
    assert {f"outcome.{o}" for o in outcomes} <= _dicts()["en"]
    sessions_ts = (SRC / "pages" / "sessions.ts").read_text()
    listed = re.search(r"export const OUTCOMES = \[([^\]]*)\]", sessions_ts).group(1)
    assert set(re.findall(r"'(\w+)'", listed)) == outcomes  # the sessions filter and the insights chart


def _source_hash() -> str:
    here = REPO / "console"
    files = [*(p for p in (here / "src").rglob("*") if p.is_file()), here / "build.mjs", here / "package-lock.json",
             here / "tsconfig.json"]
    h = hashlib.sha256()
    for rel in sorted(p.relative_to(here).as_posix() for p in files):
        h.update(f"{rel}\n".encode())
        h.update((here / rel).read_bytes())
        h.update(b"\n")
    return h.hexdigest()


def test_committed_bundle_was_built_from_these_sources():
    built = json.loads((BUNDLE / "build.json").read_text())["sources_sha256"]
    assert built == _source_hash(), "console/ changed since the bundle was built: run `make console` and commit admin/static/console"
    for name in ("index.html", "console.css"):
        assert (BUNDLE / name).read_bytes() == (SRC / name).read_bytes()
    js = (BUNDLE / "console.js").read_text()
    assert "dh-console-lang" in js and "X-CSRF-Token" in js


def test_rebuilding_gives_the_committed_bytes(tmp_path):
    if not (REPO / "console" / "node_modules" / "esbuild").is_dir() or not shutil.which("node"):
        pytest.skip("console/node_modules not installed (make console installs it)")
    subprocess.run(["node", "build.mjs", str(tmp_path)], cwd=REPO / "console", check=True, capture_output=True, timeout=120)
    for name in ("console.js", "console.css", "index.html", "build.json"):
        assert (tmp_path / name).read_bytes() == (BUNDLE / name).read_bytes(), name
