"""A bounded history of samples per source: the last few seconds, no more.

Kernels that need a whole stance (insole metrics at toe-off, IMU
integration back to the last stationary moment) select samples by time
from here, so the result does not depend on how the samples were chunked.

Samples sit in one contiguous buffer (times, data rows) that is appended to
at its end. When the end is reached, the samples still inside the horizon
move to the front, and the buffer doubles only when they would fill more
than half of it. A window is two binary searches and one copy, however many
frames it spans. Two ways in: :meth:`push` keeps a block by reference (two
list appends; blocks are joined in one concatenation when a window is next
asked for), and a compiled kernel may append rows itself (:func:`append_rows`
on ``times``/``data``/``bounds``, with :meth:`make_room` when it reports the
buffer full): the insole's contact kernel does, so an insole frame costs no
Python work for its history. A ring is fed one way or the other (pushed
blocks wait to be joined, so mixing the two would misorder samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit

from poserun.processors.jit import JIT

_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class SampleRing:
    def __init__(self, horizon_ns: int = 4_000_000_000, capacity: int = 1024, width: int | None = None,
                 dtype: type | np.dtype | None = None) -> None:
        self.horizon_ns = horizon_ns
        self._cap = max(int(capacity), 8)
        self.times = np.empty(0, np.int64)
        self.data: np.ndarray | None = None
        self.bounds = np.zeros(2, np.int64)  # [start, end): expired before start, free from end
        self._new_t: list[np.ndarray] = []  # blocks pushed since the last window
        self._new_d: list[np.ndarray] = []
        if width is not None:  # allocated now: a kernel appends to it
            self._reset(np.empty((0, width), dtype=dtype or np.float64))

    def push(self, times_ns: np.ndarray, data: np.ndarray) -> None:
        """Keep a block (by reference until the next window; the caller must not modify it)."""
        if len(times_ns) == 0:
            return
        self._new_t.append(times_ns)
        self._new_d.append(data)
        if len(self._new_t) >= 256:
            self._flush()

    def _flush(self) -> None:
        """Move the pushed blocks into the buffer: one concatenation for all of them."""
        blocks_t, blocks_d = self._new_t, self._new_d
        self._new_t, self._new_d = [], []
        try:
            times = np.concatenate(blocks_t)
            data = np.concatenate(blocks_d)
        except ValueError:  # the source's layout changed: keep the blocks of the newest layout
            shape = blocks_d[-1].shape[1:]
            keep = [i for i, b in enumerate(blocks_d) if b.shape[1:] == shape]
            times = np.concatenate([blocks_t[i] for i in keep])
            data = np.concatenate([blocks_d[i] for i in keep])
        if self.data is None or self.data.shape[1:] != data.shape[1:]:
            self._reset(data)
        n = times.shape[0]
        self.make_room(n, int(times[-1]))
        end = int(self.bounds[1])
        self.times[end:end + n] = times
        self.data[end:end + n] = data  # type: ignore[index]
        self.bounds[1] = end + n

    def _reset(self, data: np.ndarray) -> None:
        self.times = np.empty(self._cap, np.int64)
        self.data = np.empty((self._cap, *data.shape[1:]), dtype=data.dtype)
        self.bounds[:] = 0

    def make_room(self, incoming: int, newest_ns: int) -> None:
        """Make the buffer able to take ``incoming`` more rows: drop what left the horizon
        (relative to ``newest_ns``), move the rest to the front, doubling the buffer when it
        would stay more than half full."""
        start, end = int(self.bounds[0]), int(self.bounds[1])
        t, d = self.times, self.data
        assert d is not None
        if end + incoming <= t.shape[0]:
            return
        cut = start + int(t[start:end].searchsorted(_bound(math.ceil, newest_ns - self.horizon_ns), "left"))
        live = end - cut
        cap = t.shape[0]
        while 2 * (live + incoming) > cap:
            cap *= 2
        if cap != t.shape[0]:
            nt, nd = np.empty(cap, np.int64), np.empty((cap, *d.shape[1:]), dtype=d.dtype)
        else:
            nt, nd = t, d
        nt[:live] = t[cut:end]  # (overlapping moves to the front are safe: numpy buffers them)
        nd[:live] = d[cut:end]
        self.times, self.data = nt, nd
        self.bounds[0], self.bounds[1] = 0, live

    def window(self, start_ns: float, end_ns: float) -> tuple[np.ndarray, np.ndarray]:
        """Samples with start <= t <= end (copies)."""
        if self._new_t:
            self._flush()
        if self.data is None:
            return np.empty(0, np.int64), np.empty((0, 0))
        start = int(self.bounds[0])
        t = self.times[start:int(self.bounds[1])]
        # Python int bounds: a float would make numpy convert the whole buffer to compare
        first = int(t.searchsorted(_bound(math.ceil, start_ns), "left"))
        last = int(t.searchsorted(_bound(math.floor, end_ns), "right"))
        if last <= first:
            return np.empty(0, np.int64), np.empty((0, *self.data.shape[1:]), dtype=self.data.dtype)
        return t[first:last].copy(), self.data[start + first:start + last].copy()

    @property
    def size(self) -> int:
        """Sample slots held: the buffer's capacity plus the blocks not yet joined into it
        (the memory check; expired samples stay until the buffer next compacts)."""
        return self.times.shape[0] + sum(len(t) for t in self._new_t)


@njit(**JIT)
def append_rows(times_ns: np.ndarray, rows: np.ndarray, ring_t: np.ndarray, ring_d: np.ndarray,
                bounds: np.ndarray) -> bool:
    """Append samples to a ring's buffer from compiled code; False (nothing written) when they
    do not fit or their width differs (then :meth:`SampleRing.make_room` and call again)."""
    n = times_ns.shape[0]
    end = bounds[1]
    if end + n > ring_t.shape[0] or rows.shape[1] != ring_d.shape[1]:
        return False
    for i in range(n):
        ring_t[end + i] = times_ns[i]
        for j in range(rows.shape[1]):
            ring_d[end + i, j] = rows[i, j]
    bounds[1] = end + n
    return True


def _bound(rounding: Callable[[float], int], t: float) -> int:
    """A time bound as an int in int64's range (rounded towards the inside of the window)."""
    if t != t:  # NaN: an empty window
        return _I64_MAX if rounding is math.ceil else _I64_MIN
    if math.isinf(t):
        return _I64_MAX if t > 0 else _I64_MIN
    return min(max(rounding(t), _I64_MIN), _I64_MAX)
