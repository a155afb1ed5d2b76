"""Screenshots of every console page into out/console/ (python -m tests.console.screenshots).

They are taken by the browser tests themselves (tests/console/test_console_e2e.py), on pages
filled by those tests, so this runs that file: a real admin server, the test database
(PostgreSQL when DH_TEST_DATABASE_URL is set, e.g. after `eval "$(bash scripts/services.sh env)"`,
else SQLite) and headless Chromium.
"""

from __future__ import annotations

import sys

import pytest

from tests.console.conftest import OUT

if __name__ == "__main__":
    code = pytest.main(["-q", "-p", "no:cacheprovider", "tests/console/test_console_e2e.py", *sys.argv[1:]])
    shots = sorted(OUT.glob("*.png"))
    print(f"{len(shots)} screenshots in {OUT}:")
    for p in shots:
        print(f"  {p.name}")
    sys.exit(code)
