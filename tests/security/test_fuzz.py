"""A bounded schema-driven fuzz of the OpenAPI document: no input may make the API answer 5xx.

schemathesis generates bodies, query strings and path parameters for every operation from the
app's own OpenAPI document and calls the real app (in process, on the test database: SQLite,
or PostgreSQL with ``DH_TEST_DATABASE_URL``), signed in as the admin of a platform-admin tenant
so every route runs past its role check. Half the cases follow the schema, half violate it
(schemathesis' negative mode): neither kind may get a 5xx. ``DH_FUZZ_EXAMPLES`` (default 25 per operation) sizes
the run: about two minutes on a laptop. Marked ``fuzz`` (``-m fuzz`` runs only it); CI runs it
with the rest of the suite.
"""

from __future__ import annotations

import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from .conftest import API, make_tenant

pytestmark = pytest.mark.fuzz
EXAMPLES = int(os.environ.get("DH_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_target(_configure):
    """The app and a tenant whose admin is a platform admin (so /tenants is reachable too)."""
    from admin.main import create_app

    app = create_app()
    app.state.rate_limiter.hit = lambda *a, **k: None  # rate limits would turn most cases into 429s
    return app, make_tenant(superuser=True)


def test_no_input_makes_a_5xx(fuzz_target):
    """Every operation of the OpenAPI document, ``EXAMPLES`` generated cases each; all 5xx are collected."""
    app, tenant = fuzz_target
    # POST /logout would revoke the token the fuzz signs in with.
    schema = schemathesis.openapi.from_asgi(f"{API}/openapi.json", app).exclude(path=f"{API}/logout")
    failures: dict[str, str] = {}
    counts = {"operations": 0, "cases": 0}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1

        # Schema-valid inputs (must not fail) and schema-violating ones (must be refused with a 4xx).
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=strategy)
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate], database=None)
        def run(case) -> None:
            counts["cases"] += 1
            response = case.call(headers=tenant.headers["admin"])
            if response.status_code >= 500:
                failures.setdefault(
                    f"{case.method} {operation.path}",  # noqa: B023 - called in this iteration
                    f"{case.formatted_path} query={case.query!r} body={str(case.body)[:300]!r} -> "
                    f"{response.status_code} {response.text[:300]}",
                )

        run()
    elapsed = time.monotonic() - started
    print(f"fuzz: {counts['operations']} operations, {counts['cases']} cases, {elapsed:.0f} s, "
          f"{len(failures)} operations with a 5xx")
    assert counts["operations"] > 30 and counts["cases"] > counts["operations"]
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
