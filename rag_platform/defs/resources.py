"""Resources: settings, the run-wide refresh lock, the search backend, and dbt."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from rag_platform.backends import IndexBackend, make_backend
from rag_platform.config import Settings, load_settings
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

    Once the run holds it, the components later steps need start loading in the background."""

    home: str = ""
    timeout_s: float = 3600.0

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Any]:
        settings = load_settings(Path(self.home) if self.home else None)
        with refresh_lock(settings.lock_path, self.timeout_s, on_wait=context.log.info if context.log else None):
            warming = prewarm(settings)
            try:
                yield self
            finally:
                warming.join()  # never leave a half-done import or model load to interpreter shutdown
