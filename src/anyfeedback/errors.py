"""User-facing errors: one line, naming where the problem is; the CLI turns them into exit code 2.

Raise `InputError` for anything the user can fix (a bad file, flag or value). Library callers get a
normal exception; the CLI prints `error: <message>` on one line, no traceback, and exits 2.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_DIVERGED = 1


class DivergenceError(RuntimeError):
    """A run stopped because its state stopped being healthy (non-finite or exploding loss,
    gradients, parameters or Q values), before keeping the bad state. One line: the CLI prints
    `error: <message>` and exits 1; the last healthy checkpoint is intact."""


class InputError(ValueError):
    """Bad user input. `str(err)` is one line: `<where>: <field>: <problem>`."""

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.line = line
        self.record = record
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.source is not None:
            where.append(str(self.source))
        if self.line is not None:
            where.append(f"line {self.line}")
        elif self.record is not None:
            where.append(f"record {self.record}")
        head = ":".join(where[:1]) + ("" if len(where) < 2 else f":{where[1]}")
        parts = [p for p in (head, f"field '{self.field}'" if self.field else "") if p]
        text = ": ".join(parts + [self.problem])
        return " ".join(text.split())  # guarantee a single line
