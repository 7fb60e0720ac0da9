"""Progress of long steps: a bar with rate and ETA on a terminal, plain log lines otherwise (stderr only)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("rag_platform.progress")


class Progress:
    """Call with (done, total) after each batch. Log lines come every 10% or 10 s when stderr is not a TTY."""

    def __init__(self, label: str, log: Callable[[str], None] | None = None):
        self.label = label
        self.log = log or logger.info
        self.started = time.monotonic()
        self.last_logged = 0.0
        self.last_fraction = 0.0
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        if sys.stderr.isatty():
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=self.label, unit="chunk", file=sys.stderr, leave=False)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._bar.close()
            return
        now = time.monotonic()
        fraction = done / total
        if done >= total or fraction - self.last_fraction >= 0.1 or now - self.last_logged >= 10:
            elapsed = now - self.started
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (total - done) / rate if rate > 0 else 0.0
            self.log(f"{self.label}: {done}/{total} ({fraction:.0%}), {rate:.1f}/s, eta {eta:.0f}s")
            self.last_logged, self.last_fraction = now, fraction
