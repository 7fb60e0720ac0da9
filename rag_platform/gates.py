"""The outcome of a quality gate, one shape for every kind: Great Expectations suites, dbt tests and the index
gates (delete fraction, ledger match, retrieval quality). A run publishes only when all of its gates pass."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Gate:
    """``name`` reads as the assertion that held or failed (``chunks_have_unique_ids``)."""

    name: str
    passed: bool
    message: str
    evaluated_rows: int = 0
    failures: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_failures(cls, name: str, evaluated_rows: int, failures: Sequence[str]) -> Gate:
        """Passed when ``failures`` is empty; the message names every failure otherwise."""
        message = f"{name}: " + "; ".join(failures) if failures else f"{name}: {evaluated_rows} rows passed"
        return cls(name, not failures, message, evaluated_rows, tuple(failures))

    def with_failure(self, note: str) -> Gate:
        return Gate.from_failures(self.name, self.evaluated_rows, (*self.failures, note))

    def as_dict(self) -> dict[str, object]:
        """The contract's shape in ``refresh --json`` ``gates``: {"passed", "message"}."""
        return {"passed": self.passed, "message": self.message}


def all_passed(gates: Iterable[Gate]) -> bool:
    return all(gate.passed for gate in gates)
