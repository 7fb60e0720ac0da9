"""The platform resource: one ``RunParts`` per run (settings resolved once), and the refresh lock held for the
whole run, so runs from the CLI, sensors and the UI never interleave their writes."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from rag_platform.locking import refresh_lock
from rag_platform.parts import RunParts


class PlatformResource(dg.ConfigurableResource):
    """The platform home's parts; ``home`` empty means ``$RAG_PLATFORM_HOME`` (read once, when the run starts)."""

    home: str = ""
    lock_timeout_s: float = 3600.0
    _parts: RunParts | None = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["PlatformResource"]:
        parts = RunParts.resolve(Path(self.home) if self.home else None)
        on_wait = context.log.info if context.log else None
        with refresh_lock(parts.settings.lock_path, self.lock_timeout_s, on_wait=on_wait):
            self._parts = parts
            try:
                yield self
            finally:
                parts.close()
                self._parts = None

    @property
    def parts(self) -> RunParts:
        if self._parts is None:  # used outside a run (direct asset invocation in tests)
            self._parts = RunParts.resolve(Path(self.home) if self.home else None)
        return self._parts
