"""Errors the CLI turns into exit codes. Expected failures never print a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class InputError(Exception):
    """Bad input or usage: exit code 2, nothing written."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, field="", message=problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def render(self) -> str:
        count = len(self.problems)
        head = f"error: {count} problem{'s' if count != 1 else ''} found" if count > 1 else "error:"
        lines = [str(p).lstrip(": ") for p in self.problems]
        if count == 1:
            return f"{head} {lines[0]}"
        return "\n".join([head, *(f"  {line}" for line in lines)])
