"""Review output: check findings and ``plan --against`` as text and as pull-request markdown (with Mermaid).

Markdown is meant to be posted as is as a PR comment; GitHub caps a comment at 65 536 characters, so the
file diff is cut to fit (``MAX_COMMENT``) and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .check import CHECKS, Finding, summary
from .report import details, md_table

MAX_COMMENT = 60_000  # GitHub's limit is 65 536 characters; keep room for the wrapper
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


def checks_table_markdown() -> str:
    """The catalogue of check IDs (docs/check.md)."""
    return md_table(("ID", "severity", "family", "what it catches"),
                    [(f"`{c.id}`", c.severity, c.family, c.title) for c in CHECKS.values()])


_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def mermaid_id(prefix: str, name: str) -> str:
    return f"{prefix}_{_MERMAID_ID.sub('_', name)}"


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


def against_markdown(data: dict[str, Any], findings: Sequence[Finding], diff_text: str, diagram: str) -> str:
    sem = data["semantic"]
    n, r, v, s, f = sem["nodes"], sem["racks"], sem["vms"], sem["sessions"], sem["files"]
    verdict = summary(findings)
    status = (":x: check failed" if verdict["errors"] else ":white_check_mark: check passed")
    out = [f"### provisioner plan: `{data['site']}` against `{data['against']}`", "",
           f"**{status}** ({summary_phrase(findings)}) · {data['summary']}", ""]
    if sem["empty"]:
        out += ["No semantic change and no file change.", ""]
    out.append(md_table(("", "added", "removed", "changed"), [
        ("nodes", len(n["added"]), len(n["removed"]), len(n["changed"])),
        ("racks", len(r["added"]), len(r["removed"]), len(r["changed"])),
        ("pod /24s", len(sem["pods"]["allocated"]), len(sem["pods"]["released"]), "–"),
        ("BGP sessions", len(s["added"]), len(s["removed"]), len(s["changed"])),
        ("VMs", len(v["added"]), len(v["removed"]), len(v["changed"])),
        ("spines", len(sem["spines"]["added"]), len(sem["spines"]["removed"]), len(sem["spines"]["changed"])),
        ("files", len(f["added"]), len(f["removed"]), len(f["changed"])),
    ]))
    if r["added"] or r["removed"]:
        rows = [(f"`{k}`", "added", x["dc"], f"`{x['tor']}`", x["asn"], f"`{x['subnet']}`")
                for k, x in r["added"].items()]
        rows += [(f"`{k}`", "removed", x["dc"], f"`{x['tor']}`", x["asn"], f"`{x['subnet']}`")
                 for k, x in r["removed"].items()]
        out += ["", "#### Racks", "", md_table(("rack", "", "DC", "ToR", "AS", "subnet"), rows)]
    out += ["", "#### Anycast announcers per DC", ""]
    rows = []
    for a in sem["anycast"]:
        delta = a["after"] - a["before"]
        rows.append((f"`{a['range']}`", a["dc"], a["before"], a["after"],
                     f"**{delta:+d}**" if delta else "unchanged"))
    out.append(md_table(("range", "DC", "before", "after", "change"), rows))
    out += ["", "#### etcd membership", ""]
    rows = []
    for name, e in sem["etcd"].items():
        changes = [f"+`{m}`" for m in e["added"]] + [f"−`{m}`" for m in e["removed"]]
        changes += [f"~`{m}`: " + ", ".join(f"{k} {a} → {b}" for k, (a, b) in ch.items())
                    for m, ch in e["changed"].items()]
        if e["settings_changed"]:
            changes.append("settings: " + ", ".join(e["settings_changed"]))
        rows.append((f"`{name}`", ", ".join(e["before"]), ", ".join(e["after"]),
                     "<br>".join(changes) if changes else "unchanged"))
    out.append(md_table(("cluster", "before", "after", "change"), rows))
    moving = [name for name, e in sem["etcd"].items() if e["added"] or e["removed"] or e["changed"]]
    if moving:
        out += ["", "> [!WARNING]", f"> etcd membership changes ({', '.join(moving)}): roll it out one member at a "
                "time (`etcdctl member add`, start the new member, then `member remove` the old one), with quorum "
                "checked between steps."]
    if data.get("tolerance"):
        out += ["", "<sub>fault tolerance after this change:</sub>", ""]
        out += [f"- {line}" for line in data["tolerance"]]
    out += ["", "#### Check findings (this change)", "", findings_markdown(findings)]
    if diagram:
        out += ["", "#### What the change touches", "", diagram]
    detail_blocks = []
    if n["added"] or n["removed"] or n["changed"]:
        rows = [(f"`{h}`", "added", x["dc"], x["rack"], f"`{x['address']}`", f"`{x['pod_cidr']}`")
                for h, x in n["added"].items()]
        rows += [(f"`{h}`", "removed", x["dc"], x["rack"], f"`{x['address']}`", f"`{x['pod_cidr']}`")
                 for h, x in n["removed"].items()]
        rows += [(f"`{h}`", "changed", "", "", "; ".join(f"{k} {a} → {b}" for k, (a, b) in ch.items()), "")
                 for h, ch in n["changed"].items()]
        detail_blocks.append(details(f"{_count(len(rows), 'node')} added, removed or changed",
                                     md_table(("node", "", "DC", "rack", "address", "pod /24"), rows)))
    pods = sem["pods"]
    if pods["allocated"] or pods["released"]:
        rows = [(f"`{h}`", "allocated", f"`{c}`") for h, c in pods["allocated"].items()]
        rows += [(f"`{h}`", "released", f"`{c}`") for h, c in pods["released"].items()]
        detail_blocks.append(details(f"pod /24s: {len(pods['allocated'])} allocated, {len(pods['released'])} "
                                     "released", md_table(("node", "", "prefix"), rows)))
    if any(s.values()):
        lines = [f"+ {k}" for k in s["added"]] + [f"- {k}" for k in s["removed"]]
        lines += [f"~ {k}: " + "; ".join(f"{fk} {a} -> {b}" for fk, (a, b) in ch.items())
                  for k, ch in s["changed"].items()]
        detail_blocks.append(details(f"BGP sessions: {len(s['added'])} added, {len(s['removed'])} removed, "
                                     f"{len(s['changed'])} changed", "```\n" + "\n".join(lines) + "\n```"))
    touched_files = ([f"+ {p}" for p in f["added"]] + [f"- {p}" for p in f["removed"]]
                     + [f"~ {p}" for p in f["changed"]])
    if touched_files:
        detail_blocks.append(details(f"{_count(len(touched_files), 'file')} touched",
                                     "```\n" + "\n".join(touched_files) + "\n```"))
    if detail_blocks:
        out += ["", "#### Details", ""]
        for block in detail_blocks:
            out += [block, ""]
    body = "\n".join(out).rstrip("\n") + "\n"
    if diff_text:
        room = MAX_COMMENT - len(body) - 200
        shown = diff_text
        note = ""
        if len(diff_text) > room:
            shown = diff_text[:max(room, 0)].rsplit("\n", 1)[0] + "\n"
            note = (f"\n\n_The diff is cut at {len(shown):,} of {len(diff_text):,} characters to fit a PR comment; "
                    "run `provisioner plan --against … --diff` for all of it._")
        body += "\n" + details("file diff", "```diff\n" + shown + "```" + note) + "\n"
    return body


def mermaid(base, new, touched: dict[str, dict[str, str]]) -> str:
    """A flowchart of the DCs (subgraphs), the touched racks, switches and VMs, highlighted by status."""
    if not any(touched.values()):
        return ""
    tors = {t.rack: t for t in base.tors} | {t.rack: t for t in new.tors}
    spines = {s.name: s for s in base.spines} | {s.name: s for s in new.spines}
    base_vms = {v.name: v for v in base.vms}
    vms = base_vms | {v.name: v for v in new.vms}
    nodes_per_rack: dict[str, int] = {}
    for n in new.nodes:
        nodes_per_rack[n.rack] = nodes_per_rack.get(n.rack, 0) + 1
    dcs = list(dict.fromkeys([*new.dcs, *base.dcs]))
    racks_per_dc: dict[str, int] = {}
    for t in new.tors:
        racks_per_dc[t.dc] = racks_per_dc.get(t.dc, 0) + 1
    lines = ["```mermaid", "flowchart TB"]
    edges: list[str] = []
    classes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for dc in dcs:
        lines.append(f'  subgraph {mermaid_id("dc", dc)}["{dc}"]')
        lines.append("    direction TB")
        dc_spines = [s for s in spines.values() if s.dc == dc]
        for s in dc_spines:
            sid = mermaid_id("sp", s.name)
            lines.append(f'    {sid}{{{{"{s.name}<br/>AS {s.asn}"}}}}')
            if s.name in touched["spines"]:
                classes[touched["spines"][s.name]].append(sid)
        shown = 0
        host_racks: set[str] = set()
        for rack, status in touched["racks"].items():
            t = tors.get(rack)
            if t is None or t.dc != dc:
                continue
            shown += 1
            rid = mermaid_id("rack", rack)
            count = nodes_per_rack.get(rack, 0)
            lines.append(f'    {rid}["{rack}<br/>{t.name} · AS {t.asn}<br/>{count} nodes · {t.subnet}"]')
            classes[status].append(rid)
            edges += [f"  {rid} --- {mermaid_id('sp', s.name)}" for s in dc_spines]
        for name, status in touched["vms"].items():
            v = vms.get(name)
            if v is None or v.dc != dc:
                continue
            vid = mermaid_id("vm", name)
            was = base_vms.get(name)
            where = v.rack if was is None or was.rack == v.rack else f"{was.rack} → {v.rack}"
            lines.append(f'    {vid}(["{name}<br/>{v.role.replace("_", " ")} · {where}"])')
            classes[status].append(vid)
            rid = mermaid_id("rack", v.rack)
            if v.rack not in touched["racks"] and v.rack not in host_racks:
                host_racks.add(v.rack)
                lines.append(f'    {rid}["{v.rack}"]')
                lines.append(f"    class {rid} same")
                edges += [f"  {rid} --- {mermaid_id('sp', s.name)}" for s in dc_spines]
            edges.append(f"  {vid} -.- {rid}")
        others = racks_per_dc.get(dc, 0) - shown - len(host_racks)
        if others > 0:
            oid = mermaid_id("other", dc)
            lines.append(f'    {oid}["{others} other racks, unchanged"]')
            lines.append(f"    class {oid} same")
        lines.append("  end")
    lines += list(dict.fromkeys(edges))
    lines += [
        "  classDef added fill:#dafbe1,stroke:#1a7f37,stroke-width:2px,color:#000",
        "  classDef removed fill:#ffebe9,stroke:#cf222e,stroke-width:2px,stroke-dasharray:5 3,color:#000",
        "  classDef changed fill:#fff8c5,stroke:#9a6700,stroke-width:2px,color:#000",
        "  classDef same fill:#f6f8fa,stroke:#d0d7de,color:#57606a",
    ]
    for status, ids in classes.items():
        if ids:
            lines.append(f"  class {','.join(dict.fromkeys(ids))} {status}")
    lines.append("```")
    legend = "<sub>green: added · red: removed · yellow: changed · grey: unchanged</sub>"
    return "\n".join(lines) + "\n\n" + legend
