"""The Mermaid diagram of a change for the PR comment: what it touches, at any size.

One subgraph per DC, in site order. In each: the spines (folded into one node unless one changed), the
racks the change touches grouped by the kind of change (one node per group, with its racks named), the
untouched racks folded into one node, and touched VMs with where they move. A DC the change does not touch
is one grey node. Every node carries a class, and the legend is a subgraph of the same classes, so the
colours always match it. The size is bounded by DCs x kinds of change, not by racks: a change of all 36
racks of the example is three rack nodes.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from .plan import Plan, PlanSpine

_ID = re.compile(r"[^A-Za-z0-9_]")
STYLES = {
    "added": "fill:#dafbe1,stroke:#1a7f37,stroke-width:2px,color:#000",
    "removed": "fill:#ffebe9,stroke:#cf222e,stroke-width:2px,stroke-dasharray:5 3,color:#000",
    "changed": "fill:#fff8c5,stroke:#9a6700,stroke-width:2px,color:#000",
    "same": "fill:#eaeef2,stroke:#8c959f,color:#24292f",
}
LEGEND = {"added": "added", "removed": "removed", "changed": "changed", "same": "unchanged"}
SUBGRAPH_STYLE = "fill:#ffffff,stroke:#8c959f"


def mermaid_id(prefix: str, name: str) -> str:
    return f"{prefix}_{_ID.sub('_', name)}"


def _label(text: str) -> str:
    return text.replace('"', "'")


def _names(items: list[str], limit: int = 3) -> str:
    return ", ".join(items) if len(items) <= limit else ", ".join(items[:limit]) + f" +{len(items) - limit}"


def rack_reasons(sem: dict[str, Any], base: Plan, new: Plan) -> dict[str, str]:
    """rack -> what changed in it, in words ('nodes added', 'sessions changed', 'config only', ...)."""
    node_rack = {n.hostname: n.rack for n in base.nodes} | {n.hostname: n.rack for n in new.nodes}
    tor_rack = {t.name: t.rack for t in base.tors} | {t.name: t.rack for t in new.tors}
    vm_rack = {v.name: v.rack for v in base.vms} | {v.name: v.rack for v in new.vms}
    reasons: dict[str, set[str]] = {}

    def add(rack: str | None, why: str) -> None:
        if rack is not None:
            reasons.setdefault(rack, set()).add(why)

    for section, word in (("added", "nodes added"), ("removed", "nodes removed"), ("changed", "nodes changed")):
        for h in sem["nodes"][section]:
            add(node_rack.get(h), word)
    for r in sem["racks"]["changed"]:
        add(r, "ToR changed")
    for v in [*sem["vms"]["added"], *sem["vms"]["removed"], *sem["vms"]["changed"]]:
        add(vm_rack.get(v), "VM moved")
    for b in base.vms:
        if b.name in sem["vms"]["changed"]:
            add(b.rack, "VM moved")
    for key in [*sem["sessions"]["added"], *sem["sessions"]["removed"], *sem["sessions"]["changed"]]:
        for host in key.split(" ", 1)[1].split("~"):
            add(node_rack.get(host) or tor_rack.get(host) or vm_rack.get(host), "sessions changed")
    out = {}
    for rack, status in sem["touched"]["racks"].items():
        if status in ("added", "removed"):
            out[rack] = status
        else:
            why = reasons.get(rack, set())
            # Node changes explain session changes; say the stronger thing only.
            if why & {"nodes added", "nodes removed", "nodes changed", "ToR changed", "VM moved"}:
                why = why - {"sessions changed"}
            out[rack] = ", ".join(sorted(why)) or "config only"
    return out


def mermaid(base: Plan, new: Plan, sem: dict[str, Any]) -> str:
    """A flowchart of what the change touches, highlighted by status; '' when it touches nothing."""
    if not any(sem["touched"].values()):
        return ""
    chart = _Chart(base, new, sem)
    dcs = list(dict.fromkeys([*new.dcs, *base.dcs]))
    # Left to right at the top level, with the DCs chained by invisible links, so they appear in site
    # order (Mermaid otherwise lays unconnected subgraphs out last-first); inside each DC top to bottom.
    chart.lines += ["```mermaid", "flowchart LR"]
    for dc in dcs:
        chart.dc(dc)
    lines, classes = chart.lines, chart.classes
    lines += list(dict.fromkeys(chart.edges))
    lines.append('  subgraph legend["legend"]')
    lines.append("    direction TB")
    for status, text in LEGEND.items():
        lid = mermaid_id("legend", status)
        lines.append(f'    {lid}["{text}"]')
        classes[status].append(lid)
    lines.append("  end")
    lines.append(f"  style legend {SUBGRAPH_STYLE}")
    lines.append("  " + " ~~~ ".join([*(mermaid_id("dc", dc) for dc in dcs), "legend"]))
    for status, style in STYLES.items():
        lines.append(f"  classDef {status} {style}")
    for status, ids in classes.items():
        if ids:
            lines.append(f"  class {','.join(dict.fromkeys(ids))} {status}")
    lines.append("```")
    return "\n".join(lines)


class _Chart:
    """The flowchart being written: its lines, the edges (written after all DCs) and each node's class."""

    def __init__(self, base: Plan, new: Plan, sem: dict[str, Any]):
        self.touched = sem["touched"]
        self.tors = {t.rack: t for t in base.tors} | {t.rack: t for t in new.tors}
        self.spines = {s.name: s for s in base.spines} | {s.name: s for s in new.spines}
        self.base_vms = {v.name: v for v in base.vms}
        self.vms = self.base_vms | {v.name: v for v in new.vms}
        self.nodes_per_rack = Counter(n.rack for n in new.nodes)
        self.reasons = rack_reasons(sem, base, new)
        self.lines: list[str] = []
        self.edges: list[str] = []
        self.classes: dict[str, list[str]] = {k: [] for k in STYLES}

    def dc(self, dc: str) -> None:
        """One DC's subgraph: folded to one node when nothing in it changed."""
        touched = self.touched
        did = mermaid_id("dc", dc)
        dc_racks = [r for r, t in self.tors.items() if t.dc == dc]
        dc_spines = [s for s in self.spines.values() if s.dc == dc]
        changed_racks = [r for r in dc_racks if r in touched["racks"]]
        changed_spines = [s.name for s in dc_spines if s.name in touched["spines"]]
        dc_vms = [v for v in touched["vms"] if self.vms.get(v) is not None and self.vms[v].dc == dc]
        self.lines.append(f'  subgraph {did}["{dc}"]')
        self.lines.append("    direction TB")
        if changed_racks or changed_spines or dc_vms:
            spine_ids = self._spines(dc, dc_spines, bool(changed_spines))
            self._racks(dc, dc_racks, changed_racks, spine_ids)
            self._vms(dc_vms)
        else:
            oid = mermaid_id("same", dc)
            self.lines.append(f'    {oid}["{len(dc_racks)} racks · {len(dc_spines)} spines<br/>unchanged"]')
            self.classes["same"].append(oid)
        self.lines.append("  end")
        self.lines.append(f"  style {did} {SUBGRAPH_STYLE}")

    def _spines(self, dc: str, dc_spines: list[PlanSpine], any_changed: bool) -> list[str]:
        """Spines: one node each when any changed, else one folded node."""
        if not any_changed:
            sid = mermaid_id("spines", dc)
            asns = sorted({s.asn for s in dc_spines})
            self.lines.append(f'    {sid}{{{{"{len(dc_spines)} spines<br/>AS {", ".join(map(str, asns))}"}}}}')
            self.classes["same"].append(sid)
            return [sid]
        spine_ids = []
        for s in dc_spines:
            sid = mermaid_id("sp", s.name)
            self.lines.append(f'    {sid}{{{{"{s.name}<br/>AS {s.asn}"}}}}')
            self.classes[self.touched["spines"].get(s.name, "same")].append(sid)
            spine_ids.append(sid)
        return spine_ids

    def _racks(self, dc: str, dc_racks: list[str], changed_racks: list[str], spine_ids: list[str]) -> None:
        """Touched racks grouped by kind of change, then one node for the unchanged rest."""
        groups: dict[tuple[str, str], list[str]] = {}
        for r in changed_racks:
            groups.setdefault((self.touched["racks"][r], self.reasons.get(r, "config only")), []).append(r)
        for k, ((status, why), racks) in enumerate(sorted(groups.items())):
            gid = mermaid_id("racks", f"{dc}_{k}")
            if len(racks) == 1:
                t = self.tors[racks[0]]
                text = (f"{racks[0]} · {why}<br/>{t.name} · AS {t.asn}<br/>"
                        f"{self.nodes_per_rack.get(racks[0], 0)} nodes · {t.subnet}")
            else:
                which = "all racks" if len(racks) == len(dc_racks) else _names(racks)
                text = f"{len(racks)} racks · {why}<br/>{which}"
            self.lines.append(f'    {gid}["{_label(text)}"]')
            self.classes[status].append(gid)
            self.edges += [f"  {gid} --- {sid}" for sid in spine_ids]
        rest = len(dc_racks) - len(changed_racks)
        if rest > 0:
            oid = mermaid_id("same", dc)
            self.lines.append(f'    {oid}["{rest} racks unchanged"]')
            self.classes["same"].append(oid)
            self.edges += [f"  {oid} --- {sid}" for sid in spine_ids]

    def _vms(self, dc_vms: list[str]) -> None:
        for name in dc_vms:
            v = self.vms[name]
            vid = mermaid_id("vm", name)
            was = self.base_vms.get(name)
            where = v.rack if was is None or was.rack == v.rack else f"{was.rack} → {v.rack}"
            self.lines.append(f'    {vid}(["{name}<br/>{v.role.replace("_", " ")} · {where}"])')
            self.classes[self.touched["vms"][name]].append(vid)
