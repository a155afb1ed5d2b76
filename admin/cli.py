"""Command line: ``python -m admin {serve,worker,migrate,create-admin,create-api-key}``."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import select

from admin.core import audit
from admin.core.config import get_settings
from admin.core.db import session_scope
from admin.core.security import hash_password, new_api_key, sha256_hex
from admin.models import ApiKey, Role, Tenant, User


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
        user.hashed_password = hash_password(password)
        user.role, user.is_active, user.is_superuser = Role.admin.value, True, superuser
        db.flush()
        audit.record(db, tenant_id=user.tenant_id, actor=audit.Actor("system", None), action=action,
                     resource="user", resource_id=user.id, changes={"email": email, "role": "admin", "cli": True})
        return user.id


def create_api_key(tenant_slug: str, name: str, role: str) -> str:
    """Create an API key for a machine client; returns the secret (shown once)."""
    secret = new_api_key()
    with session_scope() as db:
        tenant = ensure_tenant(db, tenant_slug)
        key = ApiKey(tenant_id=tenant.id, name=name, role=Role(role).value, prefix=secret[:10],
                     key_hash=sha256_hex(secret))
        db.add(key)
        db.flush()
        audit.record(db, tenant_id=tenant.id, actor=audit.Actor("system", None), action="create",
                     resource="api_key", resource_id=key.id, changes={"name": name, "role": role, "cli": True})
    return secret


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
    sub.add_parser("migrate", help="upgrade the database to the migration head")
    ap = sub.add_parser("create-admin", help="create the first admin (a platform administrator)")
    ap.add_argument("--email", default=s.first_admin_email, required=s.first_admin_email is None)
    ap.add_argument("--password", default=s.first_admin_password, required=s.first_admin_password is None)
    ap.add_argument("--tenant", default=s.first_tenant)
    kp = sub.add_parser("create-api-key", help="create an API key for the agent or the avatar worker")
    kp.add_argument("--tenant", default=s.first_tenant)
    kp.add_argument("--name", default="agent")
    kp.add_argument("--role", default="agent", choices=[r.value for r in Role])
    args = p.parse_args(argv)

    if args.cmd == "migrate":
        from admin.migrate import upgrade

        upgrade()
        print("database at migration head", file=sys.stderr)
    elif args.cmd == "serve":
        import uvicorn

        if not args.no_migrate:
            from admin.migrate import upgrade

            upgrade()
        if s.first_admin_email and s.first_admin_password:
            create_admin(s.first_admin_email, s.first_admin_password, s.first_tenant)
        uvicorn.run("admin.main:create_app", factory=True, host=args.host, port=args.port, workers=args.workers)
    elif args.cmd == "worker":
        from admin.worker import celery_app

        celery_app.worker_main(["worker", "-Q", args.queues, "-c", str(args.concurrency), "-l", "INFO"])
    elif args.cmd == "create-admin":
        print(create_admin(args.email, args.password, args.tenant))
    elif args.cmd == "create-api-key":
        print(create_api_key(args.tenant, args.name, args.role))
    return 0
