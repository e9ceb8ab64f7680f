"""Send pacing: a worker never sends faster than FORMRELAY_SEND_RATE."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Spaces sends evenly at `rate` per second (0: no limit), e.g. for SES's MaxSendRate."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self._next = 0.0

    def wait(self, stop: threading.Event) -> None:
        """Return when the next send is allowed (or at once when `stop` is set)."""
        if not self.interval:
            return
        now = self.clock()
        if self._next > now:
            stop.wait(self._next - now)
        self._next = max(self._next, now) + self.interval
