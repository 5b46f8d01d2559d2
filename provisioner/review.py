"""Review output: check findings and ``plan --against`` as text and as pull-request markdown (with Mermaid).

Markdown is meant to be posted as is as a PR comment; GitHub caps a comment at 65 536 characters, so the
file diff is cut to fit (``MAX_COMMENT``) and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .check import CHECKS, Finding, summary
from .report import md_table

MAX_COMMENT = 60_000  # GitHub's limit is 65 536 characters; keep room for the wrapper
SEVERITY_MARK = {"error": "ERROR", "warning": "WARN"}


def finding_status(f: Finding) -> str:
    return "WAIVED" if f.waived else SEVERITY_MARK[f.severity]


def summary_phrase(findings: Sequence[Finding]) -> str:
    s = summary(findings)
    def n(k: int, word: str) -> str:
        return f"{k} {word}{'s' if k != 1 else ''}"
    return f"{n(s['errors'], 'error')}, {n(s['warnings'], 'warning')}, {s['waived']} waived"


def findings_text(findings: Sequence[Finding]) -> str:
    lines = []
    for f in findings:
        objs = ", ".join(f.objects)
        lines.append(f"{finding_status(f):<6} {f.id}  {objs}: {f.message}")
        lines.append(f"       hint: {f.hint}")
        if f.waived:
            lines.append(f"       waived: {f.waiver_reason}")
    return "\n".join(lines)


def check_text(site: str, findings: Sequence[Finding]) -> str:
    head = f"check {site}: {summary_phrase(findings)}"
    body = findings_text(findings)
    return head + "\n" + (body + "\n" if body else "")


def _objects_md(objects: Iterable[str], limit: int = 6) -> str:
    objs = list(objects)
    shown = ", ".join(f"`{o}`" for o in objs[:limit])
    return shown + (f" and {len(objs) - limit} more" if len(objs) > limit else "")


def findings_markdown(findings: Sequence[Finding], limit: int = 200) -> str:
    if not findings:
        return "No findings: every check passed."
    icon = {"ERROR": ":x:", "WARN": ":warning:", "WAIVED": ":white_check_mark:"}
    rows = []
    for f in findings[:limit]:
        status = finding_status(f)
        note = f.hint if not f.waived else f"waived: {f.waiver_reason}"
        rows.append((f"{icon[status]} {status.lower()}", f"`{f.id}`", _objects_md(f.objects), f.message, note))
    out = md_table(("", "check", "objects", "finding", "hint"), rows)
    if len(findings) > limit:
        out += f"\n\n… and {len(findings) - limit} more findings (run `provisioner check` for all of them)."
    return out


def check_markdown(site: str, findings: Sequence[Finding]) -> str:
    s = summary(findings)
    verdict = ":x: **check failed**" if s["errors"] else ":white_check_mark: **check passed**"
    return (f"### provisioner check: `{site}`\n\n{verdict}: {summary_phrase(findings)}\n\n"
            f"{findings_markdown(findings)}\n")


def check_json(site: str, findings: Sequence[Finding], options: dict[str, Any]) -> dict[str, Any]:
    return {"site": site, "options": options, "summary": summary(findings),
            "findings": [f.as_dict() for f in findings]}


def checks_table_markdown() -> str:
    """The catalogue of check IDs (docs/check.md)."""
    return md_table(("ID", "severity", "family", "what it catches"),
                    [(f"`{c.id}`", c.severity, c.family, c.title) for c in CHECKS.values()])


_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def mermaid_id(prefix: str, name: str) -> str:
    return f"{prefix}_{_MERMAID_ID.sub('_', name)}"
