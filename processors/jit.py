"""numba settings in one place: every kernel is ``@njit(**JIT)``.

``cache=True`` keeps compiled kernels on disk so a warm start is fast;
``NUMBA_DISABLE_JIT=1`` runs the same code as plain Python (coverage).
"""

from __future__ import annotations

JIT: dict[str, bool] = {"cache": True, "nogil": True}
