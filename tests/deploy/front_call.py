"""A caller's call through a deployment of compose.yaml, as the network sees it (run inside the
deployment's namespace by scripts/compose_native.py; tests/deploy/test_compose_native.py).

    python tests/deploy/front_call.py ENV_FILE STATE_DIR QUESTION_WAV RESULT_JSON

1. The HTTPS front answers for DH_DOMAIN with a certificate of the deployment's CA (verified).
2. The first administrator of .env signs in through it and sets up an organisation's persona,
   knowledge and avatar through the API (harness.provision), as an operator does in the console.
3. Headless Chromium opens the widget page from https://DH_DOMAIN, the caller clicks, asks a
   question with its (fake) microphone: the avatar's video plays, the agent's answer is in the
   captions; the caller ends the call.
4. The session is in the admin's record with the caller's and the agent's turns.
5. Every service's /metrics answers on the internal network (the admin's with its token), and
   not on the public origin.
The TURN/TLS port answers with the same certificate. What was seen goes to RESULT_JSON.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
W = "window.dhWidget"


def main(env_file: Path, state: Path, wav: Path, result_path: Path) -> int:
    sys.path.insert(0, str(REPO / "scripts"))
    from compose_native import read_env_file

    env = read_env_file(env_file)
    domain, base = env["DH_DOMAIN"], f"https://{env['DH_DOMAIN']}"
    ca = state / "volumes" / "caddy-data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    os.environ["SSL_CERT_FILE"] = str(ca)  # httpx (provision too) trusts the deployment's own CA, and only it
    import httpx

    from harness.devstack import DEMO_PERSONA
    from harness.provision import provision, sign_in

    result: dict = {"origin": base}
    t0 = time.monotonic()
    assert httpx.get(f"{base}/healthz", timeout=10).json()["status"] == "ok"
    result["https_verified"] = True

    # TURN/TLS: the same certificate, for the same name
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((domain, 5349), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=domain) as tls:
        result["turn_tls_subject"] = dict(x[0] for x in tls.getpeercert()["subject"]) or tls.getpeercert().get(
            "subjectAltName")

    admin = sign_in(base, env["DH_ADMIN_EMAIL"], env["DH_ADMIN_PASSWORD"])
    ids = provision(base, admin, DEMO_PERSONA, avatar_name="Branch assistant")
    result["provisioned"] = ids
    result["provision_s"] = round(time.monotonic() - t0, 1)

    from playwright.sync_api import sync_playwright

    from tests.widget.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}"])
        # Chromium is not given the deployment's CA (its own store): the certificate was verified above.
        # The page runs under the admin's own Content-Security-Policy (no bypass): the test's
        # predicates are functions, which Playwright calls without eval.
        context = browser.new_context(ignore_https_errors=True, permissions=["microphone"])
        page = context.new_page()
        logs: list[str] = []
        page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
        try:
            page.goto(f"{base}/widget/demo.html?avatar={ids['avatar_id']}")
            result["page_is_secure_context"] = page.evaluate("window.isSecureContext")
            page.locator("button.dh-launcher").click(timeout=30_000)
            page.wait_for_function(f"() => {W}.metrics.firstFrame", timeout=120_000)
            result["click_to_first_frame_ms"] = page.evaluate(f"{W}.metrics.clickToFirstFrameMs")
            result["server_url"] = page.evaluate(f"{W}.grant.server_url || {W}.grant.serverUrl || ''") or None
            page.wait_for_function(
                f"""() => {{
                  const c = {W}.captions;
                  const agent = c.filter(x => x.who === 'agent').map(x => x.text.toLowerCase()).join(' ');
                  return agent.includes('monday');
                }}""", timeout=120_000)
            result["captions"] = page.evaluate(f"{W}.captions.map(c => ({{who: c.who, text: c.text}}))")
            f0 = page.evaluate(f"{W}.frames")
            page.wait_for_timeout(2000)
            result["frames_in_2s"] = page.evaluate(f"{W}.frames") - f0
            room = page.evaluate(f"{W}.grant.room")
            result["room"] = room
            page.get_by_role("button", name="End call").click()
            page.wait_for_function(f"() => {W}.state === 'ended'", timeout=20_000)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["console"] = logs[-40:]
            result_path.write_text(json.dumps(result, indent=2))
            raise
        finally:
            context.close()
            browser.close()

    # the record: one session for the room, with the caller's and the agent's turns
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"{base}/api/v1", headers=admin, timeout=30) as api:
        while True:
            found = [s for s in api.get("/sessions", params={"limit": 20}).json()["items"] if s["room"] == room]
            if found and found[0].get("ended_at"):
                detail = api.get(f"/sessions/{found[0]['id']}").json()
                result["session"] = {"id": found[0]["id"], "outcome": detail.get("outcome"),
                                     "speakers": [t["speaker"] for t in detail.get("turns", [])]}
                break
            if time.monotonic() > deadline:
                result["session"] = {"found": bool(found)}
                break
            time.sleep(1.0)
    # every service's metrics, as Prometheus (profile "monitoring") scrapes them on the internal network
    token = {"Authorization": f"Bearer {env['DH_METRICS_TOKEN']}"}
    scraped = {}
    for name, url, headers in (("agent", "http://agent:9101/metrics", {}), ("avatar", "http://avatar:9102/metrics", {}),
                               ("admin", "http://admin:8000/metrics", token), ("livekit", "http://livekit:6789/metrics", {}),
                               ("caddy", "http://caddy:9180/metrics", {})):
        r = httpx.get(url, headers=headers, timeout=10)
        names = sorted({ln.split("{")[0].split(" ")[0] for ln in r.text.splitlines() if ln and not ln.startswith("#")})
        scraped[name] = {"status": r.status_code, "names": names, "lines": [ln for ln in r.text.splitlines() if ln.startswith((
            "dh_calls_total", "dh_turn_stage_seconds_count", "dh_avatar_frames_total", "admin_http_requests_total",
            "livekit_", "caddy_http_requests_total"))][:40]}
    scraped["front"] = {"status": httpx.get(f"{base}/metrics", timeout=10).status_code}  # not on the public origin
    result["metrics"] = scraped
    result["total_s"] = round(time.monotonic() - t0, 1)
    result_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*(Path(a) for a in sys.argv[1:5])))
