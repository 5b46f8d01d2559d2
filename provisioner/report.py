"""Output shared by plan, check and capacity: text for terminals, JSON for tools, markdown for PRs."""

from __future__ import annotations

import json
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


CHART_BACKGROUND, CHART_INK = "#ffffff", "#333333"


def xychart(title: str, labels: Sequence[str], y_label: str, y_max: float,
            series: Sequence[tuple[str, Sequence[float], str]]) -> str:
    """A fenced Mermaid ``xychart-beta`` (GitHub and GitLab render it), the same on light and dark pages.

    ``series`` are (``"bar"`` or ``"line"``, values, colour): Mermaid draws every bar series of a category at
    the same place, later ones on top, so cumulative sums drawn largest first read as a stacked bar. xychart has
    no legend: the caller writes one under the chart naming the colours given here.

    Mermaid starts every bar a few pixels below the 0 tick (half a tick label of padding), so a 0 would still
    show as a sliver of its colour; a last bar series of zeros in the background colour covers that strip.
    """
    bars = [s for s in series if s[0] == "bar"]
    lines_ = [s for s in series if s[0] != "bar"]
    if bars:
        bars.append(("bar", [0] * len(labels), CHART_BACKGROUND))
    ordered = [*bars, *lines_]
    theme = {"backgroundColor": CHART_BACKGROUND, "titleColor": CHART_INK,
             **{f"{axis}{part}Color": CHART_INK for axis in ("xAxis", "yAxis")
                for part in ("Label", "Title", "Tick", "Line")},
             "plotColorPalette": ", ".join(colour for _kind, _values, colour in ordered)}
    init = json.dumps({"themeVariables": {"xyChart": theme}}, separators=(", ", ": "))
    out = ["```mermaid", f"%%{{init: {init}}}%%", "xychart-beta", f"    title {_quoted(title)}",
           "    x-axis [" + ", ".join(_quoted(x) for x in labels) + "]",
           f"    y-axis {_quoted(y_label)} 0 --> {_number(y_max)}"]
    out += [f"    {kind} [" + ", ".join(_number(v) for v in values) + "]" for kind, values, _colour in ordered]
    return "\n".join([*out, "```"])


def _quoted(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def nice_ceiling(value: float) -> int:
    """The smallest 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k at or above ``value`` (at least 1): an axis
    top that reads as a round number and leaves little empty space."""
    scale = 1
    while scale * 10 < value:
        scale *= 10
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * scale >= value:
            return max(1, round(step * scale))
    raise AssertionError("unreachable")
