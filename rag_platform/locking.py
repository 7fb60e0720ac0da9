"""The refresh lock: an OS advisory lock (flock) on a file under the platform home.

Held for a whole refresh run, whatever started it (CLI, sensor, UI), so two refreshes never interleave their
writes. The kernel releases it when the holder dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(RuntimeError):
    """Another refresh held the lock longer than we were willing to wait."""


@contextmanager
def refresh_lock(path: Path, timeout_s: float = 3600.0, on_wait: object = None) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced and callable(on_wait):
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    on_wait(f"another refresh is running (pid {holder}); waiting for it to finish")
                    announced = True
                if time.monotonic() > deadline:
                    raise LockTimeout(f"another refresh held {path.name} for over {timeout_s:.0f}s") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
