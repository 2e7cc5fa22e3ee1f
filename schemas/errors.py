"""Errors that name where a problem is: FILE:LINE:COL: key.path: what was expected, what was found."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    source: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """Every problem of a document at once, one line each."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class FieldErrors(ValueError):
    """Cross-field problems found by a model validator, each with its location relative to that model.

    Pydantic keeps the raised exception in the error's context, so the YAML error formatter can place
    each problem at the key it names instead of at the enclosing object.
    """

    def __init__(self):
        self.items: list[tuple[tuple, str]] = []
        super().__init__()

    def add(self, loc: tuple, message: str) -> None:
        self.items.append((loc, message))

    def raise_if_any(self) -> None:
        if self.items:
            self.args = ("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in self.items),)
            raise self
