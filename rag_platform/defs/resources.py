"""The platform resource: one ``RunParts`` per run (settings resolved once), the run's liveness lock, and the
refresh lock held for the whole run, so runs from the CLI, sensors and the UI never interleave their writes; the
warehouse stays open for the run's steps."""

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from rag_platform import warehouse
from rag_platform.defs.liveness import fail_dead_runs, run_liveness
from rag_platform.locking import refresh_lock
from rag_platform.parts import RunParts


class PlatformResource(dg.ConfigurableResource):
    """The platform home's parts; ``home`` empty means ``$RAG_PLATFORM_HOME`` (read once, when the run starts)."""

    home: str = ""
    lock_timeout_s: float = 3600.0
    # Set by ``finetune`` for its candidate run: the model to index with, and the gain it must show to publish.
    embedding_model: str = ""
    min_gain: float | None = None
    _parts: RunParts | None = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["PlatformResource"]:
        parts = self._resolve()
        lock_path = parts.settings.lock_path
        run_id = context.run_id
        with ExitStack() as stack:
            if run_id and context.instance is not None:
                # Held while this process runs the run; a run whose lock is free is dead (see defs/liveness.py).
                stack.enter_context(run_liveness(context.instance, lock_path, run_id))
                fail_dead_runs(context.instance, lock_path)
            stack.enter_context(
                refresh_lock(lock_path, self.lock_timeout_s, on_wait=_waiting_logger(context), run_id=run_id)
            )
            stack.enter_context(warehouse.held(parts.settings))  # this run is the warehouse's only writer
            self._parts = parts
            try:
                yield self
            finally:
                parts.close()
                self._parts = None

    @property
    def parts(self) -> RunParts:
        if self._parts is None:  # used outside a run (direct asset invocation in tests)
            self._parts = self._resolve()
        return self._parts

    def _resolve(self) -> RunParts:
        return RunParts.resolve(Path(self.home) if self.home else None, self.embedding_model, self.min_gain)


def _waiting_logger(context: dg.InitResourceContext) -> Callable[[str], None]:
    """Say who holds the lock in the run's event log and on the process's stderr (the CLI shows the latter)."""

    def say(message: str) -> None:
        if context.log:
            context.log.info(message)
        logging.getLogger("rag_platform.locking").warning(message)

    return say
