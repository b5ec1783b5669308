"""A bounded history of sample blocks per source: the last few seconds, no more.

Kernels that need a whole stance (insole metrics at toe-off, IMU
integration back to the last stationary moment) select samples by time
from here, so the result does not depend on how the samples were chunked.
Blocks are found by binary search on their end times.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np


class SampleRing:
    def __init__(self, horizon_ns: int = 4_000_000_000) -> None:
        self.horizon_ns = horizon_ns
        self._times: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self._ends: list[int] = []
        self._start = 0  # blocks before this index are expired

    def push(self, times_ns: np.ndarray, data: np.ndarray) -> None:
        if len(times_ns) == 0:
            return
        self._times.append(times_ns)
        self._data.append(data)
        end = int(times_ns[-1])
        self._ends.append(end)
        if len(self._ends) & 31:  # expire old blocks every 32 pushes: the horizon is a floor
            return
        cut = bisect_left(self._ends, end - self.horizon_ns, self._start)
        if cut > self._start:
            self._start = cut
            if cut > 256:  # compact now and then: the lists stay short
                del self._times[:cut], self._data[:cut], self._ends[:cut]
                self._start = 0

    def window(self, start_ns: float, end_ns: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with start <= t <= end, concatenated (copies)."""
        first = bisect_left(self._ends, start_ns, self._start)
        ts, ds = [], []
        for k in range(first, len(self._ends)):
            t = self._times[k]
            if t[0] > end_ns:
                break
            if t[0] >= start_ns and t[-1] <= end_ns:
                ts.append(t)
                ds.append(self._data[k])
            else:
                m = (t >= start_ns) & (t <= end_ns)
                ts.append(t[m])
                ds.append(self._data[k][m])
        if not ts:
            return np.empty(0, np.int64), np.empty((0, 0))
        return np.concatenate(ts), np.concatenate(ds)

    @property
    def blocks(self) -> int:
        return len(self._ends) - self._start

    @property
    def size(self) -> int:
        """Samples held (memory check)."""
        return sum(len(t) for t in self._times[self._start:])
