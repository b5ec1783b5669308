"""A bounded history of sample blocks per source: the last few seconds, no more.

Kernels that need a whole stance (insole metrics at toe-off, IMU
integration back to the last stationary moment) select samples by time
from here, so the result does not depend on how the samples were chunked.
Blocks are found by binary search on their start and end times, joined
with one concatenation and trimmed with one mask (blocks are a frame each:
a window spans dozens of them).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np


class SampleRing:
    def __init__(self, horizon_ns: int = 4_000_000_000) -> None:
        self.horizon_ns = horizon_ns
        self._times: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self._ends: list[int] = []
        self._starts: list[int] = []
        self._start = 0  # blocks before this index are expired

    def push(self, times_ns: np.ndarray, data: np.ndarray) -> None:
        if len(times_ns) == 0:
            return
        self._times.append(times_ns)
        self._data.append(data)
        end = int(times_ns[-1])
        self._ends.append(end)
        self._starts.append(int(times_ns[0]))
        if len(self._ends) & 31:  # expire old blocks every 32 pushes: the horizon is a floor
            return
        cut = bisect_left(self._ends, end - self.horizon_ns, self._start)
        if cut > self._start:
            self._start = cut
            if cut > 256:  # compact now and then: the lists stay short
                del self._times[:cut], self._data[:cut], self._ends[:cut], self._starts[:cut]
                self._start = 0

    def window(self, start_ns: float, end_ns: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with start <= t <= end, concatenated (copies)."""
        first = bisect_left(self._ends, start_ns, self._start)  # the first block ending at or after start
        last = bisect_right(self._starts, end_ns, first)  # past the last block starting at or before end
        if last <= first:
            return np.empty(0, np.int64), np.empty((0, 0))
        t = np.concatenate(self._times[first:last])
        d = np.concatenate(self._data[first:last])
        if self._starts[first] < start_ns or self._ends[last - 1] > end_ns:
            m = (t >= start_ns) & (t <= end_ns)
            t, d = t[m], d[m]
        return t, d

    @property
    def blocks(self) -> int:
        return len(self._ends) - self._start

    @property
    def size(self) -> int:
        """Samples held (memory check)."""
        return sum(len(t) for t in self._times[self._start:])
