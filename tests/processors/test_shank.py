"""Shank contact events on the real recording (force-plate truth) and on hostile input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poserun.processors.shank import ShankEvents
from tests.conftest import BACH, require


@pytest.fixture(autouse=True)
def _bach2022() -> None:
    require((BACH / "walk+run.mat").exists(), "shared/data/real/bach2022 is absent")


def trials() -> list[dict]:
    from poserun.services.importer import load_bach2022

    return [t for t in load_bach2022(BACH) if t["condition"] == "running"]


def test_contact_time_on_real_running() -> None:
    from poserun.services.importer import force_contacts

    ct, found, total = [], 0, 0
    for tr in trials():
        fs = tr["fs"]
        t = np.round(np.arange(len(tr["acc"])) * 1e9 / fs).astype(np.int64)
        ev = ShankEvents().update(t, tr["acc"] * 9.80665)
        tos = ev[ev[:, 0] == 2]
        for i, j in force_contacts(tr["vgrf"], fs):
            total += 1
            k = np.flatnonzero((tos[:, 2] > t[i] - 20e6) & (tos[:, 2] < t[i] + 100e6))
            if len(k):
                found += 1
                ct.append((tos[k[0], 1] - tos[k[0], 2] - (t[j] - t[i])) / 1e6)
    ct_arr = np.array(ct)
    assert found >= 0.85 * total
    assert np.abs(ct_arr).mean() <= 15.0  # ms: the target for shank data
    assert ct_arr.std() < 20.0  # published shank/sacrum methods: limits of agreement near +-100 ms


def test_sensor_orientation_does_not_matter() -> None:
    tr = trials()[0]
    t = np.round(np.arange(len(tr["acc"])) * 1e9 / tr["fs"]).astype(np.int64)
    acc = tr["acc"] * 9.80665
    rot = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])  # upside down and turned
    a = ShankEvents().update(t, acc)
    b = ShankEvents().update(t, acc @ rot.T)
    np.testing.assert_allclose(a, b, atol=1e-3)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 2000), max_size=8))
def test_streaming_equals_batch(cuts: list[int]) -> None:
    tr = trials()[1]
    t = np.round(np.arange(len(tr["acc"])) * 1e9 / tr["fs"]).astype(np.int64)
    acc = tr["acc"] * 9.80665
    batch = ShankEvents().update(t, acc)
    det = ShankEvents()
    edges = sorted({c for c in cuts if c < len(t)})
    parts = [det.update(t[a:b], acc[a:b]) for a, b in zip([0, *edges], [*edges, len(t)], strict=True)]
    np.testing.assert_array_equal(np.concatenate(parts), batch)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
                max_size=300))
def test_any_samples_never_crash(rows: list[list[float]]) -> None:
    data = np.array(rows, dtype=np.float64).reshape(-1, 3)
    ShankEvents().update(np.arange(len(data), dtype=np.int64) * 7_000_000, data)
