"""Two organisations on one deployment, set up through the admin API only, called at the same time
through the real livekit-server, agent and avatar workers: each caller meets its own persona,
knowledge and face, each call is recorded in its own organisation, and an edit in the admin
reaches the next call without restarting anything."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from harness.caller import ScriptedCaller
from harness.devstack import REPO, Stack, free_port
from harness.provision import provision, sign_in

pytestmark = pytest.mark.e2e

API = "/api/v1"
PERSONAS = REPO / "dialogue" / "data" / "personas"
ROOT_EMAIL, ROOT_PASSWORD = "root@platform.example", "platform-root-password"
BANK_Q, BANK_A = "What are your opening hours?", ("monday",)
SCHOOL_Q, SCHOOL_A = "How much is a group lesson?", ("30", "thirty", "euro")


def tinted(rgb: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return (rgb.astype(np.float32) * np.asarray(gains, np.float32)).clip(0, 255).astype(np.uint8)


def red_blue(rgb: np.ndarray) -> float:
    """How red the picture is against blue: tells the three faces here apart, whatever the crop."""
    m = rgb.reshape(-1, 3).astype(np.float64).mean(axis=0)
    return float(m[0] / max(m[2], 1.0))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """livekit-server, the admin (a platform administrator only), then the workers with the deployment's key."""
    from avatar.engines.portrait.samples import photo

    tmp = tmp_path_factory.mktemp("two-tenants")
    s = Stack(log_dir=tmp / "logs", http_port=free_port(), env={"AGENT_MAX_CALLS": "3", "AVATAR_MAX_CALLS": "3"})
    s.log_dir.mkdir(parents=True, exist_ok=True)
    faces = {"bank": tinted(photo(), (0.55, 0.8, 1.0)), "school": tinted(photo(), (1.0, 0.8, 0.5))}
    try:
        s.start_server()
        values = s.start_admin(tmp / "admin", persona=None, extra_env={
            "ADMIN_FIRST_ADMIN_EMAIL": ROOT_EMAIL, "ADMIN_FIRST_ADMIN_PASSWORD": ROOT_PASSWORD})
        url = values["DH_ADMIN_URL"]
        root = sign_in(url, ROOT_EMAIL, ROOT_PASSWORD)
        orgs = {}
        for key, name, persona in (("bank", "Harbor Bank", "bank.yaml"), ("school", "Bright Tutoring", "tutoring.yaml")):
            slug = name.lower().replace(" ", "-")
            email, password = f"admin@{slug}.example", f"{slug}-admin-password"
            r = httpx.post(f"{url}{API}/tenants", headers=root, timeout=30,
                           json={"name": name, "slug": slug, "admin_email": email, "admin_password": password})
            assert r.status_code == 201, r.text
            headers = sign_in(url, email, password)
            png = tmp / f"{key}.png"
            Image.fromarray(faces[key]).save(png)
            ids = provision(url, headers, PERSONAS / persona, avatar_name=f"{name} desk", portrait=png)
            orgs[key] = {"headers": headers, "tenant_id": r.json()["id"], "email": email, "password": password, **ids}
        s.start_worker("avatar")
        s.start_worker("agent")
        yield {"stack": s, "url": url, "orgs": orgs, "faces": faces}
    finally:
        s.stop()


def caller_token(d, org: str) -> dict:
    o = d["orgs"][org]
    r = httpx.post(f"{d['url']}{API}/tokens/livekit", headers=o["headers"], json={"avatar_id": o["avatar_id"]}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


async def call(d, org: str, questions: list[str], say) -> dict:
    tok = caller_token(d, org)
    caller = ScriptedCaller(d["stack"].url, tok["token"])
    await caller.join()
    try:
        assert await caller.wait_video(timeout=90), f"{org}: the avatar's video never arrived"
        await caller.wait_greeting(timeout=60)
        await caller.wait_quiet(quiet_for=1.5)
        greeting = await caller.wait_said(0.0, ("harbor", "tutoring", "learning"))
        out = {"room": tok["room"], "greeting": greeting, "frame": caller.last_frame, "answers": []}
        for i, (q, expect) in enumerate(questions):
            for attempt in (1, 2):
                t = time.time()
                turn = await caller.ask(q, say(q), wait_answer_end=False)
                assert turn.first_audio is not None, f"{org}: no answer to {q!r}"
                # the whole answer's captions before the next question (they can trail the audio)
                answer = await caller.wait_said(t, expect)
                # a caller not understood asks once more, as people do: two calls on two cores can
                # starve the recogniser ("How much is a group lesson?" heard as "How much is how The
                # curve block", seen in CI). Only the own-knowledge question: the other one must fail.
                if i > 0 or attempt == 2 or any(w in answer for w in expect):
                    break
                print(f"{org}: {q!r} not understood the first time ({answer!r}); asking again")
                await caller.wait_quiet(quiet_for=1.5)
            out["answers"].append(answer)
        return out
    finally:
        await caller.leave()


async def test_each_organisation_gets_its_own_persona_knowledge_face_and_record(deployment, say):
    d = deployment
    bank, school = await asyncio.gather(call(d, "bank", [(BANK_Q, BANK_A), (SCHOOL_Q, SCHOOL_A)], say),
                                        call(d, "school", [(SCHOOL_Q, SCHOOL_A), (BANK_Q, BANK_A)], say))
    # its own greeting
    assert "harbor bank" in bank["greeting"] and "bright tutoring" not in bank["greeting"], bank["greeting"]
    assert "bright tutoring" in school["greeting"] and "harbor" not in school["greeting"], school["greeting"]
    # its own knowledge answers, the other organisation's does not
    assert any(w in bank["answers"][0] for w in BANK_A), bank["answers"]
    assert not any(w in bank["answers"][1] for w in SCHOOL_A), bank["answers"]
    assert any(w in school["answers"][0] for w in SCHOOL_A), school["answers"]
    assert not any(w in school["answers"][1] for w in BANK_A), school["answers"]
    # its own face: the video's colour balance is its own portrait's, not the other's nor the default one
    from avatar.engines.portrait.samples import photo

    refs = {"bank": red_blue(d["faces"]["bank"]), "school": red_blue(d["faces"]["school"]), "default": red_blue(photo())}
    for org, got in (("bank", bank), ("school", school)):
        assert got["frame"] is not None
        seen = red_blue(got["frame"])
        nearest = min(refs, key=lambda k: abs(refs[k] - seen))
        assert nearest == org, (org, seen, refs)
    # each call is listed in its own organisation only
    await asyncio.sleep(2.0)  # the recorder delivers the session's end
    for org, other in (("bank", school), ("school", bank)):
        mine = bank if org == "bank" else school
        h = d["orgs"][org]["headers"]
        rooms = {x["room"] for x in httpx.get(f"{d['url']}{API}/sessions", headers=h, timeout=30).json()["items"]}
        assert mine["room"] in rooms and other["room"] not in rooms, (org, rooms)
    d["bank_room"] = bank["room"]  # for the console's view of this call (below)


async def test_an_edited_greeting_reaches_the_next_call(deployment, say):
    d = deployment
    o = d["orgs"]["school"]
    new = "Good day, this is Leo at Bright Tutoring, the learning centre. What can I do for you?"
    r = httpx.patch(f"{d['url']}{API}/personas/{o['persona_id']}", headers=o["headers"], json={"greeting": new}, timeout=30)
    assert r.status_code == 200, r.text
    got = await call(d, "school", [], say)
    assert "learning centre" in got["greeting"], got["greeting"]
    # the knowledge index and the face were downloaded once per organisation, not once per call
    log = (d["stack"].log_dir / "admin.log").read_text(errors="replace")
    for part in ("/knowledge HTTP", "/avatar HTTP"):
        assert sum(part in line and "GET /api/v1/agent/calls/" in line for line in log.splitlines()) == 2, part


def test_the_recorded_call_appears_in_the_console_with_its_transcript_and_waterfall(deployment):
    """The bank's call above, as its administrator sees it in the console (real Chromium): the redacted
    transcript of what was said in the call, the answer's citation and the per-turn latency waterfall."""
    from types import SimpleNamespace

    from tests.console.conftest import CHROMIUM, OUT, Console, _need_chromium

    d = deployment
    if "bank_room" not in d:
        pytest.skip("the bank's call did not complete (see the test before)")
    _need_chromium()
    from playwright.sync_api import sync_playwright

    o = d["orgs"]["bank"]
    items = httpx.get(f"{d['url']}{API}/sessions", headers=o["headers"], timeout=30).json()["items"]
    sid = next(x["id"] for x in items if x["room"] == d["bank_room"])
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            c = Console(browser, SimpleNamespace(url=d["url"]), OUT)
            c.sign_in(o["email"], o["password"])
            c.go(f"#/sessions/{sid}")
            page = c.page
            page.get_by_test_id("transcript").wait_for()
            text = page.get_by_test_id("transcript").inner_text().lower()
            assert "opening hours" in text and any(w in text for w in BANK_A), text
            assert "harbor bank" in text  # the greeting, as the call said it
            assert page.locator("[data-testid=waterfall] .seg").count() > 0  # the call's own stage timings
            assert page.locator(".citations").count() > 0  # the answer from the bank's knowledge cites it
            c.shot("20-recorded-call")
            errors = c.unexpected_errors()
            c.close()
        finally:
            browser.close()
    assert not errors, errors
