"""Errors the CLI turns into exit codes. Expected failures never print a traceback.

Exit codes: 2 for bad input or usage (:class:`InputError`), 3 for the machine refusing a write
(:class:`EnvironmentFailure`: read-only or full file system, permissions, a busy mount point), 130
for Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass

# Values quoted in messages are cut to this many characters: a 10 kB hostname must not flood a terminal.
VALUE_LIMIT = 80
# A last guard for any one message (lists of moves, did-you-mean...).
MESSAGE_LIMIT = 2000


def short(value: object, limit: int = VALUE_LIMIT) -> str:
    """``repr(value)``, cut in the middle of long values with a count of what was left out."""
    text = repr(value)
    if len(text) <= limit:
        return text
    keep = limit - 20
    return f"{text[:keep]}...({len(text) - keep} more characters)"


def cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input: where it is and what is wrong.

    ``obj`` names the object by its own name (``rack dc2-r12``) when there is one; ``field`` is then the
    path inside it (``asn``), otherwise the dotted path from the top of the file.
    """

    file: str
    line: int | None
    field: str
    message: str
    obj: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = ": ".join(s for s in (self.obj, self.field) if s)
        what = f" {what}:" if what else ""
        return f"{where}:{what} {cut(self.message)}"

    def sort_key(self) -> tuple[str, int, str]:
        return (self.file, self.line or 0, self.obj + self.field)


class InputError(Exception):
    """Bad input or usage: exit code 2, nothing written."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, field="", message=problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def render(self) -> str:
        """Every problem, sorted by file and line (the order a reader fixes them in)."""
        problems = sorted(dict.fromkeys(self.problems), key=Problem.sort_key)
        count = len(problems)
        lines = [str(p).lstrip(": ") for p in problems]
        if count == 1:
            return f"error: {lines[0]}"
        return "\n".join([f"error: {count} problems found", *(f"  {line}" for line in lines)])


class EnvironmentFailure(Exception):
    """The machine refused a write or read (full disk, read-only, busy mount point): exit code 3.

    Raised only after whatever was half-done has been undone, so the message can say what is intact.
    """

    exit_code = 3

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def render(self) -> str:
        return f"error: {cut(self.message)}"


def os_error_text(exc: OSError) -> str:
    """``No space left on device: /path`` for any OSError (including ones without a file name)."""
    what = exc.strerror or str(exc)
    where = exc.filename if exc.filename is not None else ""
    return f"{what}: {where}" if where else what
