"""The pull-request comment of ``plan --against``: one markdown comment that always fits GitHub's limit.

GitHub refuses a comment over 65,536 characters. The comment is built in order of importance, each part
within its own budget: the summary (verdict, parameter changes, counts, anycast, etcd) comes first and is
never cut (its size is bounded: parameter changes are grouped, and collapse to one line per field pattern
when there are many); then check findings, the diagram, the detail lists (grouped: 720 identical session
changes are one line with a count), and the file diff with whatever room is left. Anything cut says how
much was left out and where the complete lists are: ``--details-dir`` writes them as files for a CI
artifact, and ``--details-url`` links the comment to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .check import Finding, summary
from .report import details, md_table
from .review import _count, findings_markdown, summary_phrase

GITHUB_LIMIT = 65_536
MAX_COMMENT = 65_000  # a margin below GitHub's limit for a workflow's separator or a trailing newline
BUDGETS = {"findings": 8_000, "diagram": 8_000, "nodes": 5_000, "pods": 3_000, "sessions": 6_000, "files": 5_000}
MAX_PARAMETER_LINES = 40


def group_sessions(s: dict[str, Any]) -> list[str]:
    """Session changes as lines, identical changes on many sessions grouped into one line with a count."""
    out: list[str] = []
    for sign, key in (("+", "added"), ("-", "removed")):
        by_kind: dict[str, list[str]] = {}
        for k in s[key]:
            kind, _, ends = k.partition(" ")
            by_kind.setdefault(kind, []).append(ends)
        for kind, ends in by_kind.items():
            out.append(f"{sign} {kind} {ends[0]}" if len(ends) == 1 else
                       f"{sign} {kind} x{len(ends)}: {', '.join(ends[:3])}" + (" …" if len(ends) > 3 else ""))
    groups: dict[tuple[str, str], list[str]] = {}
    for k, ch in s["changed"].items():
        kind, _, ends = k.partition(" ")
        groups.setdefault((kind, _normalise(ch)), []).append(ends)
    for (kind, what), ends in groups.items():
        if len(ends) == 1:
            out.append(f"~ {kind} {ends[0]}: {what}")
        else:
            out.append(f"~ {kind} x{len(ends)} ({', '.join(ends[:2])} …): {what}")
    return out


def _normalise(ch: dict[str, list[str]]) -> str:
    parts = []
    for field, (a, b) in ch.items():
        if field.endswith("announces"):
            old, new = set(filter(None, a.split(", "))), set(filter(None, b.split(", ")))
            delta = [f"-{p}" for p in sorted(old - new)] + [f"+{p}" for p in sorted(new - old)]
            parts.append(f"{field} {' '.join(delta)}")
        else:
            parts.append(f"{field} {a} -> {b}")
    return "; ".join(parts)


def group_files(f: dict[str, list[str]]) -> list[str]:
    """Touched files, one line per (change, kind of file): '~ nodes/*/bird.conf x720'."""
    out = []
    for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        groups: dict[str, list[str]] = {}
        for path in f[key]:
            parts = path.split("/")
            pattern = "/".join([parts[0], "*", *parts[2:]]) if len(parts) >= 3 else path
            groups.setdefault(pattern, []).append(path)
        for pattern, paths in groups.items():
            out.append(f"{sign} {paths[0]}" if len(paths) == 1 else f"{sign} {pattern} x{len(paths)}")
    return out


def fit_lines(lines: Sequence[str], budget: int, more: str) -> tuple[list[str], int]:
    """The lines that fit in ``budget`` characters and how many were left out."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > budget - len(more) - 40:
            return out, len(lines) - i
        out.append(line)
        used += len(line) + 1
    return out, 0


def _block(lines: Sequence[str], budget: int, where: str) -> str:
    shown, left = fit_lines(lines, budget, where)
    text = "```\n" + "\n".join(shown) + "\n```"
    if left:
        text += f"\n\n_… and {left:,} more lines: {where}._"
    return text


def parameter_lines(sem: dict[str, Any]) -> list[str]:
    """The parameter changes; many groups of one field collapse to one line per field pattern."""
    params = sem.get("parameters", [])
    if len(params) <= MAX_PARAMETER_LINES:
        return [p["line"] for p in params]
    by_pattern: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in params:
        by_pattern.setdefault((p["pattern"], p["kind"]), []).append(p)
    out = []
    for (pattern, kind), ps in by_pattern.items():
        if len(ps) == 1:
            out.append(ps[0]["line"])
            continue
        objects = sum(p["count"] for p in ps)
        out.append(f"{pattern}: {kind} on {objects:,} {ps[0]['object']}s, {len(ps)} different values "
                   f"(e.g. {ps[0]['line']})")
    return out


def against_markdown(data: dict[str, Any], findings: Sequence[Finding], diff_text: str, diagram: str,
                     details_url: str | None = None, max_chars: int = MAX_COMMENT) -> str:
    """The PR comment: a summary that is never cut, then findings, diagram and details while they fit
    (each within its budget), then as much of the file diff as is left room for."""
    sem = data["semantic"]
    where = (f"see the [complete lists]({details_url})" if details_url else
             "run `provisioner plan --against … --details-dir DIR` for the complete lists")
    head = "\n".join(_summary_section(data, findings) + _racks_section(sem) + _anycast_section(sem)
                     + _etcd_section(sem) + _tolerance_section(data)) + "\n"
    parts = [_findings_section(findings), *_diagram_section(diagram, where), *_details_section(sem, where)]
    body = head
    for part in parts:
        if len(body) + len(part) + 2 > max_chars - 500:
            body += f"\n_Left out to fit a PR comment: {where}._\n"
            break
        body += "\n" + part + "\n"
    return body + _diff_section(diff_text, max_chars - len(body), where)


def _summary_section(data: dict[str, Any], findings: Sequence[Finding]) -> list[str]:
    sem = data["semantic"]
    n, r, v, s, f = sem["nodes"], sem["racks"], sem["vms"], sem["sessions"], sem["files"]
    verdict = summary(findings)
    status = (":x: check failed" if verdict["errors"] else ":white_check_mark: check passed")
    out = [f"### provisioner plan: `{data['site']}` against `{data['against']}`", "",
           f"**{status}** ({summary_phrase(findings)}) · {data['summary']}", ""]
    if sem["empty"]:
        out += ["No semantic change and no file change.", ""]
    params = parameter_lines(sem)
    if params:
        out += ["#### What changes", ""] + [f"- `{p.split(': ', 1)[0]}`: {p.split(': ', 1)[1]}"
                                             if ": " in p else f"- {p}" for p in params] + [""]
    out.append(md_table(("", "added", "removed", "changed"), [
        ("nodes", len(n["added"]), len(n["removed"]), len(n["changed"])),
        ("racks", len(r["added"]), len(r["removed"]), len(r["changed"])),
        ("pod /24s", len(sem["pods"]["allocated"]), len(sem["pods"]["released"]), "–"),
        ("BGP sessions", len(s["added"]), len(s["removed"]), len(s["changed"])),
        ("VMs", len(v["added"]), len(v["removed"]), len(v["changed"])),
        ("spines", len(sem["spines"]["added"]), len(sem["spines"]["removed"]), len(sem["spines"]["changed"])),
        ("files", len(f["added"]), len(f["removed"]), len(f["changed"])),
    ]))
    return out


def _racks_section(sem: dict[str, Any]) -> list[str]:
    r = sem["racks"]
    if not (r["added"] or r["removed"]):
        return []
    rows = [(f"`{k}`", "added", x["dc"], f"`{x['tor']}`", x["asn"], f"`{x['subnet']}`")
            for k, x in r["added"].items()]
    rows += [(f"`{k}`", "removed", x["dc"], f"`{x['tor']}`", x["asn"], f"`{x['subnet']}`")
             for k, x in r["removed"].items()]
    if len(rows) > 40:
        rows = [*rows[:40], (f"… {len(rows) - 40} more", "", "", "", "", "")]
    return ["", "#### Racks", "", md_table(("rack", "", "DC", "ToR", "AS", "subnet"), rows)]


def _anycast_section(sem: dict[str, Any]) -> list[str]:
    rows = []
    for a in sem["anycast"]:
        delta = a["after"] - a["before"]
        rows.append((f"`{a['range']}`", a["dc"], a["before"], a["after"], f"**{delta:+d}**" if delta else "unchanged"))
    return ["", "#### Anycast announcers per DC", "", md_table(("range", "DC", "before", "after", "change"), rows)]


def _etcd_section(sem: dict[str, Any]) -> list[str]:
    rows = []
    for name, e in sem["etcd"].items():
        changes = [f"+`{m}`" for m in e["added"]] + [f"−`{m}`" for m in e["removed"]]
        changes += [f"~`{m}`: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in ch.items())
                    for m, ch in e["changed"].items()]
        if e["settings_changed"]:
            changes.append("settings: " + ", ".join(e["settings_changed"]))
        rows.append((f"`{name}`", ", ".join(e["before"]), ", ".join(e["after"]),
                     "<br>".join(changes) if changes else "unchanged"))
    out = ["", "#### etcd membership", "", md_table(("cluster", "before", "after", "change"), rows)]
    moving = [name for name, e in sem["etcd"].items() if e["added"] or e["removed"] or e["changed"]]
    if moving:
        out += ["", "> [!WARNING]", f"> etcd membership changes ({', '.join(moving)}): roll it out one member at a "
                "time (`etcdctl member add`, start the new member, then `member remove` the old one), with quorum "
                "checked between steps."]
    return out


def _tolerance_section(data: dict[str, Any]) -> list[str]:
    if not data.get("tolerance"):
        return []
    return ["", "<sub>fault tolerance after this change:</sub>", "", *(f"- {line}" for line in data["tolerance"])]


def _findings_section(findings: Sequence[Finding]) -> str:
    fnd = findings_markdown(findings)
    if len(fnd) > BUDGETS["findings"]:
        rows_fit = max(1, len(findings) * BUDGETS["findings"] // len(fnd) - 1)
        fnd = findings_markdown(findings, limit=rows_fit)
    return "#### Check findings (this change)\n\n" + fnd


def _diagram_section(diagram: str, where: str) -> list[str]:
    if diagram and len(diagram) <= BUDGETS["diagram"]:
        return ["#### What the change touches\n\n" + diagram]
    if diagram:
        return [f"#### What the change touches\n\n_The diagram ({len(diagram):,} characters) does not fit; "
                f"{where}._"]
    return []


def _details_section(sem: dict[str, Any], where: str) -> list[str]:
    n, s, f, pods = sem["nodes"], sem["sessions"], sem["files"], sem["pods"]
    blocks = []
    if n["added"] or n["removed"] or n["changed"]:
        lines = [f"{sign} {h} ({x['dc']}/{x['rack']}) {x['address']} pods {x['pod_cidr']}"
                 for sign, key in (("+", "added"), ("-", "removed")) for h, x in n[key].items()]
        lines += [f"~ {h}: " + "; ".join(f"{k} {a} -> {b}" for k, (a, b) in ch.items())
                  for h, ch in n["changed"].items()]
        blocks.append(details(f"{_count(len(lines), 'node')} added, removed or changed",
                              _block(lines, BUDGETS["nodes"], where)))
    if pods["allocated"] or pods["released"]:
        lines = [f"+ {h} {c}" for h, c in pods["allocated"].items()]
        lines += [f"- {h} {c}" for h, c in pods["released"].items()]
        blocks.append(details(f"pod /24s: {len(pods['allocated']):,} allocated, {len(pods['released']):,} released",
                              _block(lines, BUDGETS["pods"], where)))
    if any(s.values()):
        lines = group_sessions(s)
        blocks.append(details(f"BGP sessions: {len(s['added']):,} added, {len(s['removed']):,} removed, "
                              f"{len(s['changed']):,} changed ({_count(len(lines), 'kind')} of change)",
                              _block(lines, BUDGETS["sessions"], where)))
    touched_files = f["added"] + f["removed"] + f["changed"]
    if touched_files:
        blocks.append(details(f"{_count(len(touched_files), 'file')} touched",
                              _block(group_files(f), BUDGETS["files"], where)))
    return ["#### Details\n\n" + "\n\n".join(blocks)] if blocks else []


def _diff_section(diff_text: str, left: int, where: str) -> str:
    """As much of the file diff as fits in ``left`` characters, cut at a line, or a note that it does not."""
    if not diff_text:
        return ""
    room = left - len(details("file diff", "```diff\n```")) - 400
    shown = diff_text
    note = ""
    if len(diff_text) > room:
        shown = diff_text[:max(room, 0)].rsplit("\n", 1)[0] + "\n" if room > 0 else ""
        note = (f"\n\n_The diff is cut at {len(shown):,} of {len(diff_text):,} characters to fit a PR comment; "
                f"{where}._")
    if shown:
        return "\n" + details("file diff", "```diff\n" + shown + "```" + note) + "\n"
    return f"\n_The file diff ({len(diff_text):,} characters) does not fit; {where}._\n"
