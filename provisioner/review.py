"""Review output: check findings and ``plan --against`` as text and as pull-request markdown (with Mermaid).

The PR comment of ``plan --against`` (budgets, diagram) lives in comment.py and diagram.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .check import Finding, summary
from .report import details, md_table

SEVERITY_MARK = {"error": "ERROR", "warning": "WARN"}


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


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


def pending_phrase(pending: dict[str, Any]) -> str:
    """'pending: 20 pod prefixes, ...' or '' when render would change nothing in the lock file."""
    parts = [(len(pending.get("pod_cidrs", {})), "pod prefix", "pod prefixes"),
             (len(pending.get("node_addresses", {})), "node address", "node addresses"),
             (len(pending.get("fabric_links", {})), "fabric link", "fabric links")]
    words = [_count(n, one, many) for n, one, many in parts if n]
    freed = len(pending.get("fabric_links_freed", []))
    if freed:
        words.append(f"{_count(freed, 'fabric link')} to free")
    if not words:
        return ""
    return ("pending: " + ", ".join(words) + " allocated in memory; `provisioner render` writes them to "
            "allocations.yaml (commit it with the change)")


def pending_rows(pending: dict[str, Any]) -> list[tuple[str, str, str]]:
    addresses = pending.get("node_addresses", {})
    rows = [(h, c, addresses.get(h, "")) for h, c in pending.get("pod_cidrs", {}).items()]
    rows += [(h, "", a) for h, a in addresses.items() if h not in pending.get("pod_cidrs", {})]
    rows += [(k, n, "fabric link") for k, n in pending.get("fabric_links", {}).items()]
    rows += [(k, "", "fabric link to free") for k in pending.get("fabric_links_freed", [])]
    return rows


def check_text(site: str, findings: Sequence[Finding], pending: dict[str, Any] | None = None) -> str:
    head = f"check {site}: {summary_phrase(findings)}"
    body = findings_text(findings)
    phrase = pending_phrase(pending or {})
    if phrase:
        rows = pending_rows(pending or {})
        shown = [f"  {a}  {b}  {c}".rstrip() for a, b, c in rows[:20]]
        if len(rows) > 20:
            shown.append(f"  … and {len(rows) - 20} more (--format json lists all)")
        body = "\n".join(filter(None, [body, phrase, *shown]))
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


def check_markdown(site: str, findings: Sequence[Finding], pending: dict[str, Any] | None = None) -> str:
    s = summary(findings)
    verdict = ":x: **check failed**" if s["errors"] else ":white_check_mark: **check passed**"
    out = (f"### provisioner check: `{site}`\n\n{verdict}: {summary_phrase(findings)}\n\n"
           f"{findings_markdown(findings)}\n")
    phrase = pending_phrase(pending or {})
    if phrase:
        table = md_table(("node or link", "pod prefix / link", "address"), pending_rows(pending or {})[:200])
        out += "\n" + details(phrase.replace("`", ""), table) + "\n"
    return out


def check_json(site: str, findings: Sequence[Finding], options: dict[str, Any],
               pending: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"site": site, "options": options, "summary": summary(findings),
            "findings": [f.as_dict() for f in findings], "pending": pending or {}}


# --- plan --against ---------------------------------------------------------------------------



def _names(items: Iterable[str], limit: int = 8) -> str:
    xs = list(items)
    if not xs:
        return ""
    shown = ", ".join(xs[:limit]) + (f" and {len(xs) - limit} more" if len(xs) > limit else "")
    return f" ({shown})"


def semantic_lines(sem: dict[str, Any]) -> list[str]:
    """The semantic summary as plain lines (text output and the top of the markdown)."""
    n, r, v, s = sem["nodes"], sem["racks"], sem["vms"], sem["sessions"]
    lines = [p["line"] for p in sem.get("parameters", [])]
    lines += [
        f"nodes: {len(n['added'])} added{_names(n['added'], 4)}, {len(n['removed'])} removed"
        f"{_names(n['removed'], 4)}, {len(n['changed'])} changed{_names(n['changed'], 4)}",
        f"racks: {len(r['added'])} added{_names(r['added'])}, {len(r['removed'])} removed{_names(r['removed'])}, "
        f"{len(r['changed'])} changed{_names(r['changed'])}",
        f"pod /24s: {len(sem['pods']['allocated'])} allocated, {len(sem['pods']['released'])} released",
        f"BGP sessions: {len(s['added'])} added, {len(s['removed'])} removed, {len(s['changed'])} changed",
        f"VMs: {len(v['added'])} added{_names(v['added'])}, {len(v['removed'])} removed{_names(v['removed'])}, "
        f"{len(v['changed'])} changed{_names(v['changed'])}",
    ]
    sp = sem["spines"]
    if any(sp.values()):
        lines.append(f"spines: {len(sp['added'])} added{_names(sp['added'])}, {len(sp['removed'])} removed"
                     f"{_names(sp['removed'])}, {len(sp['changed'])} changed{_names(sp['changed'])}")
    for a in sem["anycast"]:
        delta = a["after"] - a["before"]
        lines.append(f"anycast {a['range']} announcers in {a['dc']}: {a['before']} -> {a['after']}"
                     + (f" ({delta:+d})" if delta else " (unchanged)"))
    for name, e in sem["etcd"].items():
        if not (e["added"] or e["removed"] or e["changed"] or e["settings_changed"]):
            lines.append(f"{name}: membership unchanged ({', '.join(e['after'])})")
            continue
        parts = [f"+{m}" for m in e["added"]] + [f"-{m}" for m in e["removed"]]
        parts += [f"~{m} ({', '.join(f'{k} {a} -> {b}' for k, (a, b) in ch.items())})"
                  for m, ch in e["changed"].items()]
        if e["settings_changed"]:
            parts.append("settings: " + ", ".join(e["settings_changed"]))
        lines.append(f"{name}: MEMBERSHIP CHANGE {'; '.join(parts)}; now {', '.join(e['after'])}")
    f = sem["files"]
    lines.append(f"files: {len(f['added'])} added, {len(f['removed'])} removed, {len(f['changed'])} changed")
    return lines


def against_text(data: dict[str, Any], findings: Sequence[Finding], diff_text: str) -> str:
    sem = data["semantic"]
    out = [f"plan for {data['summary']}", f"against {data['against']}", "", "semantic summary:"]
    out += [f"  {line}" for line in semantic_lines(sem)]
    if data.get("tolerance"):
        out += ["", "etcd fault tolerance (this change):"] + [f"  {line}" for line in data["tolerance"]]
    out += ["", f"check (this change): {summary_phrase(findings)}"]
    if findings:
        out += ["  " + line for line in findings_text(findings).splitlines()]
    f = sem["files"]
    if any(f.values()):
        out += ["", "files:"]
        for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
            out += [f"  {mark} {p}" for p in f[key]]
    out.append("")
    out.append("no changes" if sem["empty"] else "")
    text = "\n".join(out).rstrip("\n") + "\n"
    return text + diff_text
