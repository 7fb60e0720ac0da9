"""Resources: settings, the run-wide refresh lock, the search backend, and dbt."""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from rag_platform.backends import IndexBackend, make_backend
from rag_platform.config import Settings, load_settings
from rag_platform.defs.liveness import fail_dead_runs, run_liveness
from rag_platform.locking import refresh_lock
from rag_platform.refresh import prewarm


class PlatformResource(dg.ConfigurableResource):
    """Platform settings from the home's config.toml (``RAG_PLATFORM_HOME`` when ``home`` is empty)."""

    home: str = ""

    def settings(self) -> Settings:
        return load_settings(Path(self.home) if self.home else None)

    def backend(self) -> IndexBackend:
        return make_backend(self.settings())


class RefreshLockResource(dg.ConfigurableResource):
    """Holds the platform's refresh lock for the whole run, so runs from the CLI, sensors and UI never interleave.

    ``prewarm()`` starts loading what later steps need in the background; the run waits for it before ending."""

    home: str = ""
    timeout_s: float = 3600.0
    _settings: Settings | None = PrivateAttr(default=None)
    _warming: threading.Thread | None = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Any]:
        self._settings = load_settings(Path(self.home) if self.home else None)
        run_id = context.run_id
        with ExitStack() as stack:
            if run_id and context.instance is not None:
                # Held while this process runs the run; a run whose lock is free is dead (see defs/liveness.py).
                stack.enter_context(run_liveness(context.instance, self._settings.lock_path, run_id))
                fail_dead_runs(context.instance, self._settings.lock_path)
            stack.enter_context(
                refresh_lock(self._settings.lock_path, self.timeout_s, on_wait=_waiting_logger(context), run_id=run_id)
            )
            try:
                yield self
            finally:
                if self._warming is not None:
                    self._warming.join()  # never leave a half-done import or model load to interpreter shutdown

    def prewarm(self) -> None:
        """Load GX, the search backend and the model on a background thread (once per run). Called where the run
        only waits (on the dbt subprocess), so the loading does not compete with steps that run Python."""
        if self._warming is None and self._settings is not None:
            self._warming = prewarm(self._settings)


def _waiting_logger(context: dg.InitResourceContext) -> Callable[[str], None]:
    """Say who holds the lock in the run's event log and on the process's stderr (the CLI shows the latter)."""

    def say(message: str) -> None:
        if context.log:
            context.log.info(message)
        logging.getLogger("rag_platform.locking").warning(message)

    return say
