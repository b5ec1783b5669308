"""``poserun warm-up``: a cold cache is compiled (in parallel processes), a warm one only loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from poserun.services.warmup import GROUPS

CODE = """
import json, sys
from poserun.services.warmup import cache_is_cold, warm_up
before = cache_is_cold()
report = warm_up(jobs=int(sys.argv[1]))
print(json.dumps({"before": before, "cold": report.cold, "after": cache_is_cold(), "groups": report.groups}))
"""


def run(cache: Path, jobs: int) -> dict[str, object]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", CODE, str(jobs)], env=env, capture_output=True, text=True,
                         check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cold_cache_is_compiled_in_parallel_then_loaded(tmp_path: Path) -> None:
    first = run(tmp_path, jobs=2)
    assert first["before"] is True and first["cold"] is True and first["after"] is False
    assert set(first["groups"]) == set(GROUPS)  # type: ignore[arg-type]
    assert any(tmp_path.rglob("*.nbi")) and any(tmp_path.rglob("*.nbc"))
    second = run(tmp_path, jobs=2)
    assert second["before"] is False and second["cold"] is False


def test_the_cli_says_what_it_did() -> None:
    out = subprocess.run([sys.executable, "-m", "poserun", "warm-up", "--jobs", "1"], capture_output=True,
                         text=True, check=True, timeout=900)
    assert "kernels " in out.stdout and (" compiled in " in out.stdout or "loaded from the cache" in out.stdout)
