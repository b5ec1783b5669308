"""A bounded history of sample blocks per source: the last few seconds, no more.

Kernels that need a whole stance (insole metrics at toe-off, IMU
integration back to the last stationary moment) select samples by time
from here, so the result does not depend on how the samples were chunked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SampleRing:
    horizon_ns: int = 4_000_000_000
    _blocks: deque[tuple[np.ndarray, np.ndarray]] = field(default_factory=deque)

    def push(self, times_ns: np.ndarray, data: np.ndarray) -> None:
        if len(times_ns) == 0:
            return
        self._blocks.append((np.asarray(times_ns, dtype=np.int64), np.asarray(data)))
        newest = int(times_ns[-1])
        while self._blocks and int(self._blocks[0][0][-1]) < newest - self.horizon_ns:
            self._blocks.popleft()

    def window(self, start_ns: float, end_ns: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with start <= t <= end, concatenated (copies)."""
        ts, ds = [], []
        for t, d in self._blocks:
            if t[-1] < start_ns or t[0] > end_ns:
                continue
            m = (t >= start_ns) & (t <= end_ns)
            ts.append(t[m])
            ds.append(d[m])
        if not ts:
            return np.empty(0, np.int64), np.empty((0, 0))
        return np.concatenate(ts), np.concatenate(ds)

    @property
    def blocks(self) -> int:
        return len(self._blocks)
