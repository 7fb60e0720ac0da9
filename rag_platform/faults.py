"""Fault injection for crash tests: ``RAG_PLATFORM_FAULT=<stage>:<n>`` SIGKILLs the process at the n-th
time a stage reaches its hook. Stages: parse, embed, index_write, alias_switch. Several specs may be given
comma-separated. Unset (the normal case), the hook costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

STAGES = frozenset({"parse", "embed", "index_write", "alias_switch"})
_hits: Counter[str] = Counter()


def _targets() -> dict[str, int]:
    spec = os.environ.get("RAG_PLATFORM_FAULT", "")
    targets: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        stage, _, n = part.partition(":")
        if stage in STAGES:
            targets[stage] = int(n) if n.isdigit() else 1
    return targets


def checkpoint(stage: str) -> None:
    """Mark that ``stage`` is about to do work; kill the process here when a fault targets it."""
    target = _targets().get(stage)
    if target is None:
        return
    _hits[stage] += 1
    if _hits[stage] >= target:
        print(f"RAG_PLATFORM_FAULT: killing process at {stage}:{_hits[stage]}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
