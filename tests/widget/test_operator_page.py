"""A colleague takes a call over from the browser: the admin's operator page (the widget in its
operator role) accepts the handoff with the console's session and joins the room; the caller
(a scripted LiveKit participant) hears the colleague's microphone (Chromium's fake microphone
playing a question), through the real livekit-server, agent, avatar and admin."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from harness.devstack import Stack, free_port

from .conftest import OUT

pytestmark = pytest.mark.e2e

API = "/api/v1"
EMAIL, PASSWORD = "lead@harbor.example", "lead-operator-password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The admin first, so the workers know it (calls resolve their ticket and are recorded)."""
    tmp = tmp_path_factory.mktemp("operator-page")
    s = Stack(log_dir=tmp / "logs", http_port=free_port(), env={"AGENT_HANDOFF_TIMEOUT": "120"})
    s.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        s.values = s.start_with_admin(tmp / "admin", extra_env={"ADMIN_FIRST_ADMIN_EMAIL": EMAIL,
                                                                "ADMIN_FIRST_ADMIN_PASSWORD": PASSWORD})
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def admin(stack):
    return SimpleNamespace(url=stack.values["DH_ADMIN_URL"], values=stack.values)


class CallerThread(threading.Thread):
    """A caller in its own event loop: joins, asks for a person, then listens until told to leave."""

    def __init__(self, stack, token: str, say) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.stack, self.token, self.say = stack, token, say
        self.caller = None
        self.asked = threading.Event()
        self.leave = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # reported by the test
            self.error = e

    async def _run(self) -> None:
        from harness.caller import ScriptedCaller

        c = ScriptedCaller(self.stack.url, self.token)
        self.caller = c
        await c.join()
        try:
            assert await c.wait_video(timeout=90), "the avatar's video never arrived"
            await c.wait_greeting(timeout=60)
            await c.wait_quiet(quiet_for=1.5)
            await c.speak(self.say("I would like to speak to a person, please."))
            self.asked.set()
            while not self.leave.is_set():
                await asyncio.sleep(0.1)
        finally:
            await c.leave()

    def operator_heard(self) -> float | None:
        c = self.caller
        for identity, (rms, _pcm) in list(c.people.items()) if c else []:
            if identity.startswith("operator-"):
                return next((t for t, r in list(rms) if r > 300), None)
        return None


def test_a_colleague_takes_the_call_over_from_the_operator_page(stack, admin, browser, say):
    v = admin.values
    tok = httpx.post(f"{admin.url}{API}/tokens/livekit", json={"avatar_id": v["DH_AVATAR_ID"]},
                     headers={"X-API-Key": v["DH_ADMIN_API_KEY"]}, timeout=30).json()
    caller = CallerThread(stack, tok["token"], say)
    caller.start()
    context = browser.new_context(bypass_csp=True, viewport={"width": 900, "height": 700}, permissions=["microphone"])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text and errors.append(m.text))
    missing: list[str] = []  # resources answered 404 (a browser asks for /favicon.ico on its own)
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico") and missing.append(r.url))
    try:
        assert caller.asked.wait(150), f"the caller never asked: {caller.error!r}"
        deadline, entry = time.time() + 30, None
        signed = context.request.post(f"{admin.url}{API}/console/login", form={"username": EMAIL, "password": PASSWORD})
        assert signed.ok, signed.text()
        while entry is None and time.time() < deadline:
            listed = context.request.get(f"{admin.url}{API}/handoffs").json()
            entry = next((h for h in listed if h["room"] == tok["room"]), None)
            time.sleep(0.2)
        assert entry is not None, "the call never reached the handoff queue"

        page.goto(f"{admin.url}/operator.html?handoff={entry['id']}")
        join = page.locator("button.dh-launcher")
        join.wait_for(state="visible", timeout=15_000)
        t_click = time.time()
        join.click()
        page.wait_for_function("window.dhWidget.state === 'in-call'", timeout=30_000)
        page.screenshot(path=str(OUT / "operator-page-in-call.png"))
        heard = None
        while heard is None and time.time() < t_click + 30:
            heard = caller.operator_heard()
            time.sleep(0.2)
        assert heard is not None, "the caller never heard the colleague from the operator page"
        print(f"operator page: click 'Join the call' -> the caller hears the colleague {heard - t_click:.2f} s "
              "(the fake microphone starts with 3.5 s of silence)")
        # the page plays the caller's voice to the colleague
        assert page.evaluate("[...window.dhWidget.audioSink.children].some(a => a.dataset.from === 'caller')")
        # taken: a second accept is refused
        again = context.request.post(f"{admin.url}{API}/handoffs/{entry['id']}/accept",
                                     headers={"X-CSRF-Token": next(c["value"] for c in context.cookies()
                                                                   if c["name"] == "dh_csrf")})
        assert again.status == 409
    finally:
        caller.leave.set()
        caller.join(30)
        context.close()
    assert caller.error is None, caller.error
    assert not errors and not missing, (errors, missing)
