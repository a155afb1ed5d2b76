"""Command line: ``python -m admin {serve,worker,worker-ping,migrate,backup,restore,create-admin,create-api-key,bootstrap,last-session}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sqlalchemy import select

from admin import crud
from admin.core import audit
from admin.core.config import InsecureConfigurationError, get_settings
from admin.core.db import session_scope
from admin.core.security import API_KEY_PREFIX, hash_password, new_api_key, sha256_hex, verify_password
from admin.models import ApiKey, Avatar, Role, Tenant, User


def ensure_tenant(db, slug: str) -> Tenant:  # noqa: ANN001
    """The tenant called ``slug``, created when missing."""
    tenant = db.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        tenant = Tenant(name=slug, slug=slug)
        db.add(tenant)
        db.flush()
        audit.record(db, tenant_id=tenant.id, actor=audit.Actor("system", None), action="create",
                     resource="tenant", resource_id=tenant.id, changes={"slug": slug})
    return tenant


def create_admin(email: str, password: str, tenant_slug: str, superuser: bool = True) -> str:
    """Create (or reset the password of) an admin; returns the user id."""
    if len(password) < 10:
        raise SystemExit("Choose a password of at least 10 characters.")
    with session_scope() as db:
        tenant = ensure_tenant(db, tenant_slug)
        email = email.strip().lower()
        user = db.scalar(select(User).where(User.email == email))
        action = "update"
        if user is None:
            user = User(tenant_id=tenant.id, email=email, hashed_password="", role=Role.admin.value)
            db.add(user)
            action = "create"
        if action == "create" or not verify_password(password, user.hashed_password):
            user.hashed_password = hash_password(password)
            if action == "update":
                db.flush()
                crud.revoke_user_tokens(db, user.id)  # a reset password ends the sessions signed in with the old one
        user.role, user.is_active, user.is_superuser = Role.admin.value, True, superuser
        db.flush()
        audit.record(db, tenant_id=user.tenant_id, actor=audit.Actor("system", None), action=action,
                     resource="user", resource_id=user.id, changes={"email": email, "role": "admin", "cli": True})
        return user.id


def create_api_key(tenant_slug: str, name: str, role: str, *, platform: bool = False,
                   secret: str | None = None) -> str:
    """Create an API key for a machine client; returns the secret (shown once).

    ``platform``: the deployment's agent or avatar worker, serving every organisation's calls
    (only made here, on the server; an organisation's admin makes keys for its own calls only).
    ``secret``: a key chosen outside (the deployment's environment) instead of a fresh one.
    """
    chosen = secret is not None
    secret = secret if chosen else new_api_key()
    with session_scope() as db:
        tenant = ensure_tenant(db, tenant_slug)
        key = ApiKey(tenant_id=tenant.id, name=name, role=Role(role).value, prefix=secret[:10],
                     key_hash=sha256_hex(secret), platform=platform)
        db.add(key)
        db.flush()
        changes = {"name": name, "role": role, "cli": True, "platform": platform}
        audit.record(db, tenant_id=tenant.id, actor=audit.Actor("system", None), action="create",
                     resource="api_key", resource_id=key.id,
                     changes={**changes, "from_environment": True} if chosen else changes)
    return secret


def ensure_platform_agent_key(secret: str, tenant_slug: str) -> None:
    """Store the deployment's agent key given in the environment (``ADMIN_PLATFORM_AGENT_KEY``), once.

    Keys are kept hashed: an existing row with this secret is left alone (also when revoked: a
    revoked key stays revoked until the environment names a new one).
    """
    if not secret.startswith(API_KEY_PREFIX):
        raise SystemExit(f"error: ADMIN_PLATFORM_AGENT_KEY must start with {API_KEY_PREFIX} "
                         f"(scripts/init_env.sh writes one)")
    with session_scope() as db:
        if db.scalar(select(ApiKey).where(ApiKey.key_hash == sha256_hex(secret))) is not None:
            return
    create_api_key(tenant_slug, "deployment agent (environment)", Role.agent.value, platform=True, secret=secret)


def bootstrap(
    *, tenant_slug: str, state_file: Path, admin_url: str, avatar_name: str, engine: str,
    portrait: Path | None = None, admin_email: str | None = None, admin_password: str | None = None,
) -> dict[str, str]:
    """Idempotently set up a demo deployment: tenant, agent (platform), viewer and operator keys, one avatar.

    Keys are only stored hashed, so the secrets are kept in ``state_file`` (mode 600) and
    reused while they stay valid. Returns the values printed as ``export`` lines.
    """
    from admin.migrate import upgrade

    upgrade()
    if admin_email and admin_password:
        create_admin(admin_email, admin_password, tenant_slug)
    state: dict[str, str] = {}
    if state_file.exists():
        state = json.loads(state_file.read_text())
    with session_scope() as db:
        tenant = ensure_tenant(db, tenant_slug)
        tenant_id = tenant.id
        for field, role in (("agent_key", "agent"), ("viewer_key", "viewer"), ("operator_key", "operator")):
            key = db.scalar(select(ApiKey).where(ApiKey.key_hash == sha256_hex(state.get(field, ""))))
            if (key is None or key.revoked_at is not None or key.tenant_id != tenant_id
                    or (role == "agent" and not key.platform)):
                state[field] = ""
        avatar = db.get(Avatar, state.get("avatar_id", "")) if state.get("avatar_id") else None
        if avatar is None or avatar.tenant_id != tenant_id:
            avatar = db.scalar(select(Avatar).where(Avatar.tenant_id == tenant_id, Avatar.name == avatar_name))
        if avatar is None:
            avatar = Avatar(tenant_id=tenant_id, name=avatar_name, engine=engine)
            db.add(avatar)
            db.flush()
            audit.record(db, tenant_id=tenant_id, actor=audit.Actor("system", None), action="create",
                         resource="avatar", resource_id=avatar.id, changes={"name": avatar_name, "engine": engine})
        avatar_id = avatar.id
    for field, role in (("agent_key", "agent"), ("viewer_key", "viewer"), ("operator_key", "operator")):
        if not state.get(field):
            # the deployment's agent serves every organisation's calls (a platform key)
            state[field] = create_api_key(tenant_slug, f"demo-{role}", role, platform=role == "agent")
    if portrait is not None:
        _attach_portrait(avatar_id, portrait)
    state.update(tenant_id=tenant_id, avatar_id=avatar_id)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state, indent=2))
    state_file.chmod(0o600)
    return {"DH_ADMIN_URL": admin_url, "DH_ADMIN_API_KEY": state["agent_key"],
            "DH_ADMIN_VIEWER_KEY": state["viewer_key"], "DH_ADMIN_OPERATOR_KEY": state["operator_key"],
            "DH_AVATAR_ID": avatar_id, "DH_TENANT_ID": tenant_id}


def _attach_portrait(avatar_id: str, portrait: Path) -> None:
    """Validate and store a portrait, then prepare the avatar in this process."""
    from admin.images import load_portrait
    from admin.worker import prepare_avatar_job

    s = get_settings()
    p = load_portrait(portrait.read_bytes(), max_bytes=s.max_portrait_bytes, max_pixels=s.max_portrait_pixels,
                      min_side=s.min_portrait_side)
    with session_scope() as db:
        a = db.get(Avatar, avatar_id)
        if a.portrait_sha256 == p.sha256 and a.status == "ready":
            return
        folder = s.media_dir / a.tenant_id / "avatars" / a.id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"portrait-{p.sha256[:16]}.png"
        path.write_bytes(p.png)
        a.portrait_path, a.portrait_sha256, a.status, a.progress = str(path), p.sha256, "pending", 0.0
        audit.record(db, tenant_id=a.tenant_id, actor=audit.Actor("system", None), action="upload_portrait",
                     resource="avatar", resource_id=a.id, changes={"portrait_sha256": p.sha256})
    print(f"avatar preparation: {prepare_avatar_job(avatar_id)}", file=sys.stderr)


def show_last_session(url: str, key: str) -> int:
    """Print the newest call with its turns and per-stage latencies, read through the API."""
    import httpx

    h = {"X-API-Key": key}
    page = httpx.get(f"{url.rstrip('/')}/api/v1/sessions", params={"limit": 1}, headers=h, timeout=10)
    page.raise_for_status()
    items = page.json()["items"]
    if not items:
        print("no sessions recorded yet", file=sys.stderr)
        return 1
    d = httpx.get(f"{url.rstrip('/')}/api/v1/sessions/{items[0]['id']}", headers=h, timeout=10).json()
    print(f"session {d['id']} room={d['room']} outcome={d['outcome']} turns={len(d['turns'])}")
    for t in d["turns"]:
        lat = " ".join(f"{k}={v:.3f}" for k, v in t["latency"].items() if isinstance(v, (int, float)))
        print(f"  #{t['seq']:<3} {t['speaker']:<9} {t['text'][:70]!r} {lat}")
    return 0


def uvicorn_options() -> dict:
    """Uvicorn settings of ``serve``: its own X-Forwarded-For handling is off (by default it trusts
    127.0.0.1); the app reads the header itself, only from ``ADMIN_TRUSTED_PROXIES``."""
    return {"proxy_headers": False, "server_header": False}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    s = get_settings()
    p = argparse.ArgumentParser(prog="python -m admin", description="dh-agent admin backend")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="run the API with uvicorn (migrates first)")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--no-migrate", action="store_true")
    sp.add_argument("--workers", type=int, default=1)
    wp = sub.add_parser("worker", help="run a Celery worker")
    wp.add_argument("--queues", default="default", help="comma-separated: default, gpu")
    wp.add_argument("--concurrency", type=int, default=1)
    bk = sub.add_parser("backup", help="database, media and audit heads into one .tar.gz (admin/backup.py)")
    bk.add_argument("archive", type=Path)
    rs = sub.add_parser("restore", help="put a backup in place (an empty database, or --replace)")
    rs.add_argument("archive", type=Path)
    rs.add_argument("--replace", action="store_true", help="overwrite a database that is not empty")
    sub.add_parser("worker-ping", help="exit 0 when a Celery worker answers (a health check)")
    sub.add_parser("migrate", help="upgrade the database to the migration head")
    ap = sub.add_parser("create-admin", help="create the first admin (a platform administrator)")
    ap.add_argument("--email", default=s.first_admin_email, required=s.first_admin_email is None)
    ap.add_argument("--password", default=s.first_admin_password, required=s.first_admin_password is None)
    ap.add_argument("--tenant", default=s.first_tenant)
    kp = sub.add_parser("create-api-key", help="create an API key for the agent or the avatar worker")
    kp.add_argument("--tenant", default=s.first_tenant)
    kp.add_argument("--name", default="agent")
    kp.add_argument("--role", default="agent", choices=[r.value for r in Role])
    kp.add_argument("--platform", action="store_true",
                    help="the deployment's agent/avatar key: serves every organisation's calls")
    bp = sub.add_parser("bootstrap", help="idempotent demo set-up; prints export lines for the agent")
    bp.add_argument("--tenant", default=s.first_tenant)
    bp.add_argument("--state-file", type=Path, default=s.data_dir / "admin-bootstrap.json")
    bp.add_argument("--admin-url", default=s.public_url or "http://127.0.0.1:8000")
    bp.add_argument("--avatar-name", default="Demo")
    bp.add_argument("--engine", default="portrait", choices=["simple", "portrait", "flashtalk"])
    bp.add_argument("--portrait", type=Path, default=None)
    bp.add_argument("--admin-email", default=s.first_admin_email)
    bp.add_argument("--admin-password", default=s.first_admin_password)
    lp = sub.add_parser("last-session", help="print the newest call with its turns and latencies (via the API)")
    lp.add_argument("--url", default=s.public_url or "http://127.0.0.1:8000")
    lp.add_argument("--key", required=True, help="an API key with the viewer role (bootstrap prints one)")
    args = p.parse_args(argv)

    if args.cmd == "migrate":
        from admin.migrate import upgrade

        upgrade()
        print("database at migration head", file=sys.stderr)
    elif args.cmd == "serve":
        import uvicorn

        try:
            s.check_production()
        except InsecureConfigurationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not args.no_migrate:
            from admin.migrate import upgrade

            upgrade()
        if s.first_admin_email and s.first_admin_password:
            create_admin(s.first_admin_email, s.first_admin_password, s.first_tenant)
        if s.platform_agent_key:
            ensure_platform_agent_key(s.platform_agent_key, s.first_tenant)
        uvicorn.run("admin.main:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                    **uvicorn_options())
    elif args.cmd == "worker":
        from admin.worker import celery_app

        celery_app.worker_main(["worker", "-Q", args.queues, "-c", str(args.concurrency), "-l", "INFO"])
    elif args.cmd in ("backup", "restore"):
        from admin import backup as bk_mod

        try:
            if args.cmd == "backup":
                m = bk_mod.backup(args.archive)
                print(f"backup written to {args.archive}: {m['bytes']} bytes, {m['database']} at migration "
                      f"{m['revision']}, {m['seconds']} s", file=sys.stderr)
            else:
                m = bk_mod.restore(args.archive, replace=args.replace)
                print(f"restored {args.archive} (taken {m['created_at']}, migration {m['revision']}); "
                      f"`serve` migrates it to this version's head", file=sys.stderr)
        except bk_mod.BackupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.cmd == "worker-ping":
        from admin.worker import celery_app

        answers = celery_app.control.ping(timeout=3.0)
        print(f"{len(answers)} worker(s) answered", file=sys.stderr)
        return 0 if answers else 1
    elif args.cmd == "create-admin":
        print(create_admin(args.email, args.password, args.tenant))
    elif args.cmd == "bootstrap":
        values = bootstrap(
            tenant_slug=args.tenant, state_file=args.state_file, admin_url=args.admin_url,
            avatar_name=args.avatar_name, engine=args.engine, portrait=args.portrait,
            admin_email=args.admin_email, admin_password=args.admin_password,
        )
        for k, v in values.items():
            print(f"export {k}={v}")
    elif args.cmd == "last-session":
        return show_last_session(args.url, args.key)
    elif args.cmd == "create-api-key":
        print(create_api_key(args.tenant, args.name, args.role, platform=args.platform))
    return 0
