"""Output shared by plan, check and capacity: text for terminals, JSON for tools, markdown for PRs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import jsonenc

FORMATS = ("text", "json", "markdown")

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
    help="text for terminals, json for tools, markdown for pull-request comments",
)


to_json = jsonenc.document


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table for humans: drawn with rich on a terminal, plain aligned text in pipes, logs and tests
    (stable output; rich is imported only when a terminal will show it)."""
    if _interactive():
        return _rich_table(headers, rows)
    cols = [list(map(str, col)) for col in zip(headers, *rows, strict=False)] if rows else [[h] for h in headers]
    widths = [max(len(v) for v in col) for col in cols]
    def line(values: Sequence[Any]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=False)).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _rich_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rows = [[str(v) for v in row] for row in rows]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for h in headers:
        table.add_column(str(h), no_wrap=True)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    # Never truncate an address to fit a narrow terminal: let the line be as wide as the data.
    needed = sum(max(len(v) for v in (str(h), *(r[i] for r in rows if i < len(r)))) + 3 for i, h in enumerate(headers))
    console = Console(highlight=False, width=max(needed, 80))
    with console.capture() as capture:
        console.print(table)
    return capture.get().rstrip("\n")


def details(summary: str, body: str) -> str:
    """A collapsed markdown block (GitHub, GitLab and Gitea render <details>)."""
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"
