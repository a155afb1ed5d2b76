"""The layers import downwards only: production code never imports test support, and dialogue/ stands alone.

``harness/`` (the scripted caller, the local stack, provisioning), ``bench/`` and ``tests/`` exist for
the tests, the benchmarks and ``make demo``; the image does not carry them, so a production module
that imported one would fail only when deployed. ``dialogue/`` is the policy and imports none of the
other packages (README, Layout).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUPPORT = {"harness", "bench", "tests"}
FORBIDDEN = {
    "agent": SUPPORT,
    "avatar": SUPPORT,
    "admin": SUPPORT,
    "dialogue": SUPPORT | {"agent", "avatar", "admin"},
}


def imported_roots(source: str) -> set[str]:
    """Top-level packages ``source`` imports anywhere (module level, functions, conditionals)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_imports_inside_functions_are_seen():
    src = "import os\n\ndef f():\n    from harness.caller import ScriptedCaller\n    if x:\n        import bench.calls\n"
    assert imported_roots(src) == {"os", "harness", "bench"}


def test_each_layer_imports_only_what_it_may():
    broken = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((REPO / package).rglob("*.py"))
        assert files, f"no sources found under {package}/"
        for path in files:
            bad = imported_roots(path.read_text()) & forbidden
            if bad:
                broken.append(f"{path.relative_to(REPO)} imports {', '.join(sorted(bad))}")
    assert not broken, "\n".join(broken)
