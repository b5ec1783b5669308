"""processors/ stays pure: numpy, numba, the standard library and itself; no I/O, no asyncio."""

from __future__ import annotations

import ast
import sys

from tests.conftest import ROOT

ALLOWED = {"numpy", "numba"}
FORBIDDEN_STDLIB = {"asyncio", "socket", "ssl", "select", "subprocess", "threading", "http", "urllib"}


def test_processors_import_nothing_else() -> None:
    bad = []
    for path in sorted((ROOT / "processors").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                if name.startswith("poserun.processors") or name == "__future__":
                    continue
                if root in ALLOWED:
                    continue
                if root in sys.stdlib_module_names and root not in FORBIDDEN_STDLIB:
                    continue
                bad.append(f"{path.name}: {name}")
    assert not bad, bad
