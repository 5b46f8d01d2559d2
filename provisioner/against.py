"""``plan SITE --against REF``: the semantic review of a change, as text, JSON or a PR comment.

With ``details_dir`` the complete review is also written as files for a CI artifact the comment links to:
``comment.md`` (what was posted), ``plan.json`` (everything, with the diff), ``diff.patch``,
``parameters.txt``, ``sessions.txt``, ``nodes.txt``, ``files.txt`` and ``findings.txt``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import InputError
from .pipeline import compile_site
from .render import render as render_plan
from .report import to_json


def plan_against(site: Path, ref: str, fmt: str, show_diff: bool, details_dir: Path | None = None,
                 details_url: str | None = None, summary_line=None, tolerance=None) -> tuple[str, bool, bool]:
    """Plan SITE against a base (git ref or directory): (output, any semantic/file change, unwaived errors)."""
    from .check import summary
    from .commands.check import check_site
    from .comment import against_markdown, group_files, group_sessions
    from .diagram import mermaid
    from .diff import unified
    from .review import against_text, findings_text
    from .semantic import base_site, semantic_diff

    if details_dir is not None and details_dir.exists() and not details_dir.is_dir():
        raise InputError(f"--details-dir {details_dir}: exists and is not a directory")
    compiled, options, findings = check_site(site, {}, locked=True)
    new_files = render_plan(compiled.plan)
    with base_site(site, ref) as (base_dir, described):
        try:
            base = compile_site(base_dir)
        except InputError as exc:
            raise InputError([replace(p, message=f"(base {ref}) {p.message}") for p in exc.problems]) from None
        base_files = render_plan(base.plan)
    sem = semantic_diff(base.plan, compiled.plan, base_files, new_files)
    touched = sem["files"]["added"] + sem["files"]["removed"] + sem["files"]["changed"]
    data: dict[str, Any] = {
        "site": compiled.plan.name,
        "summary": summary_line(compiled) if summary_line else compiled.plan.name,
        "against": described, "semantic": sem,
        "tolerance": tolerance(compiled) if tolerance else [],
        "check": {"options": options.as_dict(), "summary": summary(findings),
                  "findings": [f.as_dict() for f in findings]},
    }
    with_diff = show_diff or fmt == "markdown" or details_dir is not None
    diff_text = unified(base_files, new_files, tuple(sorted(touched))) if with_diff else ""
    diagram = mermaid(base.plan, compiled.plan, sem) if fmt == "markdown" or details_dir is not None else ""
    comment = against_markdown(data, findings, diff_text, diagram, details_url) if fmt == "markdown" else ""
    if fmt == "json":
        if show_diff:
            data["diff"] = diff_text
        text = to_json(data)
    elif fmt == "markdown":
        text = comment
    else:
        text = against_text(data, findings, diff_text if show_diff else "")
    if details_dir is not None:
        details_dir.mkdir(parents=True, exist_ok=True)
        n = sem["nodes"]
        full = {
            "comment.md": comment or against_markdown(data, findings, diff_text, diagram, details_url),
            "plan.json": to_json({**data, "diff": diff_text}),
            "diff.patch": diff_text,
            "parameters.txt": "".join(p["line"] + "\n" + "".join(f"  {x}\n" for x in p["paths"])
                                      for p in sem["parameters"]),
            "sessions.txt": _lines([f"+ {k}" for k in sem["sessions"]["added"]]
                                   + [f"- {k}" for k in sem["sessions"]["removed"]]
                                   + [f"~ {k}: " + "; ".join(f"{f} {a} -> {b}" for f, (a, b) in ch.items())
                                      for k, ch in sem["sessions"]["changed"].items()]
                                   + ["", "grouped:"] + group_sessions(sem["sessions"])),
            "nodes.txt": _lines([f"+ {h} {x['dc']} {x['rack']} {x['address']} {x['pod_cidr']}"
                                 for h, x in n["added"].items()]
                                + [f"- {h} {x['dc']} {x['rack']} {x['address']} {x['pod_cidr']}"
                                   for h, x in n["removed"].items()]
                                + [f"~ {h}: " + "; ".join(f"{k} {a} -> {b}" for k, (a, b) in ch.items())
                                   for h, ch in n["changed"].items()]),
            "files.txt": _lines([f"+ {p}" for p in sem["files"]["added"]] + [f"- {p}" for p in sem["files"]["removed"]]
                                + [f"~ {p}" for p in sem["files"]["changed"]] + ["", "grouped:"]
                                + group_files(sem["files"])),
            "findings.txt": findings_text(findings) + "\n",
        }
        for name, content in full.items():
            (details_dir / name).write_text(content)
    return text, not sem["empty"], bool(summary(findings)["errors"])


def _lines(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
