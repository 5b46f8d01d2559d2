"""capacity: what-if arithmetic over a site (pools, pods, compute, fabric, control plane). Writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..capacity import WhatIf, capacity_report, default_nodes_per_rack, max_racks, parse_add_racks
from ..check import load_waivers
from ..errors import InputError
from ..ipam import read_lock
from ..limits import Limits, load_limits
from ..load import load_site
from ..report import details, format_option, md_table, nice_ceiling, text_table, to_json, xychart
from .check import LIMIT_KEYS, with_limits


@click.command()
@click.argument("site", type=click.Path(path_type=Path))
@click.option("--add-racks", metavar="DC=N[,DC=N…]", default=None,
              help="what-if: add N synthetic racks to DC (fresh names, ASNs and subnets; the DC's most common "
                   "hardware) and run the real allocator on them in memory")
@click.option("--nodes-per-rack", type=int, default=None, metavar="N",
              help="nodes in each added rack [default: the median of the DC's racks]")
@click.option("--lose-dc", metavar="DC", default=None,
              help="what-if: DC is lost; does the rest carry the declared demand, and keep etcd quorum?")
@click.option("--max-racks", "max_racks_dc", metavar="DC", default=None,
              help="how many more racks (of --nodes-per-rack nodes) fit in DC before something does not fit")
@format_option
@with_limits
def capacity(site: Path, add_racks: str | None, nodes_per_rack: int | None, lose_dc: str | None,
             max_racks_dc: str | None = None, fmt: str = "text", **limits: int | None) -> int:
    """Capacity of SITE and what-ifs: pod address space, pods, compute, fabric, etcd, rack space.

    The what-if site is checked by the same LIM and CAP checks as `provisioner check`, with the same
    limits (flags, else SITE/check.yaml, else the defaults) and waivers. Changes nothing on disk.
    Exit 0 when it fits (with or without warnings), 1 when it does not (the reasons come first), 2 on bad input.
    """
    if nodes_per_rack is not None and add_racks is None and max_racks_dc is None:
        raise InputError("--nodes-per-rack only applies with --add-racks or --max-racks")
    if lose_dc is not None and not lose_dc.strip():
        raise InputError("--lose-dc needs the name of a data centre, got an empty string")
    whatif = WhatIf(add_racks=parse_add_racks(add_racks), nodes_per_rack=nodes_per_rack, lose_dc=lose_dc)
    parsed, source, _doc = load_site(site)
    chosen: Limits = load_limits(source.directory, {k: limits.get(k) for k in LIMIT_KEYS})
    waivers = load_waivers(source.directory)
    lock = read_lock(source)
    if max_racks_dc is not None:
        k, data, beyond = max_racks(parsed, lock, max_racks_dc, whatif, chosen, str(source.lock_file), waivers)
        nodes = nodes_per_rack or default_nodes_per_rack(parsed, max_racks_dc)
        data["max_racks"] = {"dc": max_racks_dc, "racks": k, "nodes_per_rack": nodes,
                             "next_rack_fails_because": beyond["reasons"] if beyond else []}
    else:
        data = capacity_report(parsed, lock, whatif, chosen, str(source.lock_file), waivers)
    if fmt == "json":
        click.echo(to_json(data), nl=False)
    elif fmt == "markdown":
        click.echo(capacity_markdown(data), nl=False)
    else:
        click.echo(capacity_text(data), nl=False)
    return 0 if data["fits"] else 1


# --- shared pieces ---------------------------------------------------------------------------------


def scenario_line(data: dict[str, Any]) -> str:
    w = data["whatif"]
    parts = []
    if w["add_racks"]:
        per_dc: dict[str, list[dict]] = {}
        for r in w["synthetic_racks"]:
            per_dc.setdefault(r["dc"], []).append(r)
        for dc, n in w["add_racks"].items():
            racks = per_dc.get(dc, [])
            nodes = racks[0]["nodes"] if racks else w["nodes_per_rack"]
            parts.append(f"add {n} racks x {nodes} nodes to {dc}")
    if w["lose_dc"]:
        parts.append(f"lose {w['lose_dc']}")
    return "what-if: " + "; ".join(parts) if parts else "no what-if (the site as it is)"


def verdict(data: dict[str, Any]) -> str:
    """FITS / FITS WITH WARNINGS / DOES NOT FIT, and for --max-racks the number that fits."""
    head = data["verdict"].upper()
    m = data.get("max_racks")
    if m is not None:
        head += f": {m['racks']} more racks of {m['nodes_per_rack']} nodes fit in {m['dc']}"
    return head


def max_racks_lines(data: dict[str, Any]) -> list[str]:
    m = data.get("max_racks")
    if not m or not m["next_rack_fails_because"]:
        return []
    return [f"rack {m['racks'] + 1} would not fit:"] + [f"  - {r}" for r in m["next_rack_fails_because"]]


def synthetic_rows(data: dict[str, Any]) -> list[tuple]:
    return [(r["dc"], r["rack"], r["tor"], r["asn"], r["subnet"], r["nodes"], r["hardware"])
            for r in data["whatif"]["synthetic_racks"]]


SYNTHETIC_HEAD = ("dc", "rack", "tor", "asn", "subnet", "nodes", "hardware")
POOL_HEAD = ("pool", "cidr", "node prefix", "dcs", "size", "locked now", "allocated", "orphaned", "free",
             "largest free block", "utilisation")


def pool_rows(data: dict[str, Any]) -> list[tuple]:
    p = data["pools"]
    rows = [(r["name"], r["cidr"], f"/{r['node_prefix_len']}", ",".join(r["dcs"]) or "any", r["size"],
             r["locked_now"], r["allocated"], r["orphaned"], r["free"],
             _block(r["largest_free_block"], r["largest_free_block_start"]),
             f"{r['utilisation_pct']}%") for r in p["pools"]]
    t = p["total"]
    rows.append(("all", "", "", "", t["size"], t["locked_now"], t["allocated"], t["orphaned"], t["free"],
                 t["largest_free_block"], f"{t['utilisation_pct']}%"))
    return rows


def _block(size: int, start: str | None) -> str:
    return f"{size} from {start}" if size else "0"


def synthetic_summary(data: dict[str, Any]) -> list[str]:
    """One line per DC: the range of names, subnets and ASNs picked for the synthetic racks."""
    per_dc: dict[str, list[dict]] = {}
    for r in data["whatif"]["synthetic_racks"]:
        per_dc.setdefault(r["dc"], []).append(r)
    out = []
    for dc, racks in per_dc.items():
        a = racks[0]

        def span(key: str, racks: list[dict] = racks) -> str:
            return str(racks[0][key]) if len(racks) == 1 else f"{racks[0][key]} .. {racks[-1][key]}"

        out.append(f"  {dc}: {len(racks)} racks {span('rack')}, subnets {span('subnet')}, ASNs {span('asn')}, "
                   f"{a['nodes']} nodes each of {a['hardware']}")
    return out


def more_nodes_line(data: dict[str, Any]) -> str:
    more = data["pools"]["more_nodes_fit"]
    return ("more nodes fit in the pod pools: " + ", ".join(f"{dc} {n}" for dc, n in more.items())
            + (" (pools are shared, so these do not add up)" if len(more) > 1 else ""))


def pod_rows(data: dict[str, Any]) -> list[tuple]:
    return [(r["pool"], f"/{r['node_prefix_len']}", r["usable_addresses"], r["max_pods"], r["pods_per_node"],
             r["limited_by"]) for r in data["pods"]["per_pool"]]


POD_HEAD = ("pool", "node prefix", "usable addresses", "max pods", "pods per node", "limited by")


def pods_line(data: dict[str, Any]) -> str:
    p = data["pods"]
    line = "pods: " + ", ".join(f"{dc} {n}" for dc, n in p["per_dc"].items()) + f"; cluster total {p['total']}"
    if "after_losing" in p:
        line += f"; after losing {p['after_losing']['dc']}: {p['after_losing']['total']}"
    if p["nodes_without_prefix"]:
        line += f" ({p['nodes_without_prefix']} nodes get no pod prefix)"
    return line


COMPUTE_HEAD = ("dc", "nodes", "cores", "memory GiB", "without this DC: cores", "memory GiB", "carries demand")


def compute_rows(data: dict[str, Any]) -> list[tuple]:
    c = data["compute"]
    rows = []
    for dc, r in c["per_dc"].items():
        w = c["without_dc"][dc]
        mark = " (lost)" if dc == (c.get("lose_dc") or {}).get("dc") else ""
        rows.append((dc + mark, r["nodes"], r["cores"], r["memory_gib"], w["cores"], w["memory_gib"],
                     _yes(w["carries_demand"])))
    t = c["total"]
    rows.append(("site", t["nodes"], t["cores"], t["memory_gib"], "", "", _yes(t["carries_demand"])))
    if c["demand"]:
        rows.append(("demand", "", c["demand"]["cores"], c["demand"]["memory_gib"], "", "", ""))
    return rows


def lose_line(data: dict[str, Any]) -> str | None:
    c = data["compute"]
    lost = c.get("lose_dc")
    if not lost:
        return None
    line = f"after losing {lost['dc']}: {lost['nodes']} nodes, {lost['cores']} cores, {lost['memory_gib']} GiB"
    if c["demand"]:
        ok = "carries" if lost["carries_demand"] else "does NOT carry"
        line += (f"; {ok} the declared demand (headroom {lost['headroom_cores']} cores, "
                 f"{lost['headroom_memory_gib']} GiB)")
    else:
        line += "; no demand is declared in site.yaml"
    return line


CHECK_HEAD = ("limit", "worst", "at", "max", "ok")


def check_rows(data: dict[str, Any]) -> list[tuple]:
    return [(c["what"], c["value"], c["at"], c["limit"], "ok" if c["ok"] else "EXCEEDED")
            for c in data["fabric"]["checks"]]


ECMP_HEAD = ("anycast", "dc", "announcers", "ToR ECMP width", "spine ECMP width")


def ecmp_rows(data: dict[str, Any]) -> list[tuple]:
    return [(e["anycast"], e["dc"], e["announcers"], e["tor_width"], e["spine_width"]) for e in data["fabric"]["ecmp"]]


def control_head(data: dict[str, Any]) -> tuple:
    dcs = list(data["compute"]["per_dc"])
    return ("cluster", "members", "per DC", "quorum", *(f"survives losing {d}" for d in dcs))


def control_rows(data: dict[str, Any]) -> list[tuple]:
    rows = []
    for c in data["control_plane"]["clusters"]:
        per_dc = " ".join(f"{d}:{n}" for d, n in c["per_dc"].items())
        rows.append((c["name"], c["members"], per_dc, c["quorum"],
                     *(f"{_yes(ok)} ({c['remaining'][d]} left)" for d, ok in c["survives"].items())))
    return rows


RACK_HEAD = ("dc", "racks", "free addresses", "tightest rack", "free there")


def rack_rows(data: dict[str, Any]) -> list[tuple]:
    return [(dc, r["racks"], r["free"], r["min_free_rack"], r["min_free"]) for dc, r in data["racks"]["per_dc"].items()]


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


# --- text ------------------------------------------------------------------------------------------


def capacity_text(data: dict[str, Any]) -> str:
    out = [verdict(data)]
    out += [f"  - {r}" for r in data["reasons"]]
    out += [f"  - warning: {w}" for w in data["warnings"]]
    out += max_racks_lines(data)
    out += ["", f"capacity of site {data['site']}: {scenario_line(data)}"]
    if data["whatif"]["synthetic_racks"]:
        out += ["", f"synthetic racks ({data['whatif']['nodes_added']} nodes; names, ASNs and subnets are the "
                    "first free ones; --format json lists each):", *synthetic_summary(data)]
    out += ["", "pod address space (in node prefixes)", text_table(POOL_HEAD, pool_rows(data)), more_nodes_line(data)]
    out += ["", "pods per node", text_table(POD_HEAD, pod_rows(data)), pods_line(data)]
    out += ["", "compute (nodes only; VMs are not pod capacity)", text_table(COMPUTE_HEAD, compute_rows(data))]
    line = lose_line(data)
    if line:
        out.append(line)
    out += ["", "fabric", text_table(CHECK_HEAD, check_rows(data)), "", text_table(ECMP_HEAD, ecmp_rows(data))]
    out += ["", "control plane", text_table(control_head(data), control_rows(data))]
    out += ["", "rack space (free host addresses in the rack subnets)", text_table(RACK_HEAD, rack_rows(data))]
    return "\n".join(out) + "\n"


# --- markdown --------------------------------------------------------------------------------------


def capacity_markdown(data: dict[str, Any]) -> str:
    mark = "❌" if not data["fits"] else ("⚠️" if data["warnings"] else "✅")
    out = [f"### {mark} provisioner capacity: `{data['site']}`: {verdict(data)}", ""]
    if data["reasons"]:
        out += [f"- **{r}**" for r in data["reasons"]] + [""]
    if data["warnings"]:
        out += [f"- warning: {w}" for w in data["warnings"]] + [""]
    extra = max_racks_lines(data)
    if extra:
        out += [extra[0], "", *(line.strip() for line in extra[1:]), ""]
    out += [scenario_line(data), ""]
    if data["whatif"]["synthetic_racks"]:
        out += [details(f"{len(data['whatif']['synthetic_racks'])} synthetic racks, "
                        f"{data['whatif']['nodes_added']} nodes",
                        md_table(SYNTHETIC_HEAD, synthetic_rows(data))), ""]
    out += ["#### Pod address space", "", md_table(POOL_HEAD, pool_rows(data)), "", more_nodes_line(data), ""]
    out += [pool_chart(data), ""]
    out += ["#### Pods", "", md_table(POD_HEAD, pod_rows(data)), "", pods_line(data), ""]
    out += ["#### Compute", "", md_table(COMPUTE_HEAD, compute_rows(data)), ""]
    line = lose_line(data)
    if line:
        out += [line, ""]
    out += [cores_chart(data), ""]
    out += ["#### Fabric", "", md_table(CHECK_HEAD, check_rows(data)), "", md_table(ECMP_HEAD, ecmp_rows(data)), ""]
    out += ["#### Control plane", "", md_table(control_head(data), control_rows(data)), ""]
    out += ["#### Rack space", "", md_table(RACK_HEAD, rack_rows(data)), ""]
    racks = [(r["rack"], r["dc"], r["subnet"], r["nodes"], r["used"], r["free"]) for r in data["racks"]["racks"]]
    out += [details(f"free addresses of all {len(racks)} racks",
                    md_table(("rack", "dc", "subnet", "nodes", "used", "free"), racks))]
    return "\n".join(out) + "\n"


# --- charts ----------------------------------------------------------------------------------------
# Two charts, each answering one question; the data builders are plain functions (tested in
# tests/unit/test_capacity_charts.py), report.xychart turns them into Mermaid, and tests/daemons/test_mermaid.py
# renders them with Mermaid and checks the geometry and colours the captions promise.

NOW_COLOUR, ADDED_COLOUR, LIMIT_COLOUR = "#9ca3af", "#2563eb", "#dc2626"
DC_COLOURS = (("blue", "#2563eb"), ("amber", "#f59e0b"), ("green", "#16a34a"), ("violet", "#7c3aed"),
              ("pink", "#db2777"), ("teal", "#0d9488"), ("brown", "#92400e"), ("grey", "#6b7280"))


def pool_chart_data(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per pod pool, one chart: use before and after in % of its node prefixes, and the CAP001 headroom line.

    Two bars: "now" (the lock as it is) and "after" (the what-if, or the next render's pending allocations).
    The "after" bar is drawn in blue and the "now" share over it in grey, so the blue part is exactly what the
    change adds. Above the red line the pool keeps less than its headroom free (CAP001). One chart per pool,
    because Mermaid joins the points of a line: one line across pools would draw slopes that mean nothing.
    """
    after = "the what-if" if data["whatif"]["synthetic_racks"] else "the next render (pending allocations)"
    specs = []
    for p in data["pools"]["pools"]:
        dcs = ", ".join(p["dcs"]) or "any DC"
        specs.append({
            "title": f"Pod pool {p['name']} ({p['cidr']}, {dcs}): % of {p['size']:,} /{p['node_prefix_len']}s",
            "labels": [f"now: {p['locked_now']:,}", f"after: {p['allocated']:,}"],
            "y_label": "% allocated", "y_max": 100,
            "series": [("bar", [p["locked_now_pct"], p["utilisation_pct"]], ADDED_COLOUR),
                       ("bar", [p["locked_now_pct"]] * 2, NOW_COLOUR),
                       ("line", [p["headroom_limit_pct"]] * 2, LIMIT_COLOUR)],
            "caption": (f"Grey: allocated now (the lock). Blue: added by {after}. Red line: the headroom limit "
                        f"at {p['headroom_limit_pct']}%; above it {p['name']} keeps fewer than "
                        f"{p['headroom_threshold']:,} node prefixes free ({p['headroom_basis']}; CAP001)."),
        })
    return specs


def cores_chart_data(data: dict[str, Any]) -> dict[str, Any]:
    """Cores of the whole site and without each DC (N-1), stacked per DC, with the declared demand as a line.

    A bar below the red line means the site does not carry its demand after losing that DC. Mermaid draws bar
    series on top of each other, so series k is the sum of the first n-k DCs present in the category: the
    visible segments are then the DCs, bottom to top in site order.
    """
    c = data["compute"]
    dcs = list(c["per_dc"])
    lost = (c.get("lose_dc") or {}).get("dc")
    cats: list[tuple[str, str | None]] = [("all DCs", None)]
    cats += [(f"without {dc}" + (" (what-if)" if dc == lost else ""), dc) for dc in dcs]
    colours = [DC_COLOURS[i % len(DC_COLOURS)] for i in range(len(dcs))]
    series: list[tuple[str, list[float], str]] = []
    for top in range(len(dcs), 0, -1):  # largest sum first, so each later series covers the one below it
        series.append(("bar", [float(sum(c["per_dc"][d]["cores"] for d in dcs[:top] if d != gone))
                               for _label, gone in cats], colours[top - 1][1]))
    highest = c["total"]["cores"]
    legend = ", ".join(f"{dc} {name}" for dc, (name, _hex) in zip(dcs, colours, strict=True))
    caption = f"Cores of the nodes, stacked per DC from the bottom: {legend}."
    demand = c["demand"]
    if demand:
        series.append(("line", [float(demand["cores"])] * len(cats), LIMIT_COLOUR))
        highest = max(highest, demand["cores"])
        short = [label for label, gone in cats
                 if (c["without_dc"][gone] if gone else c["total"])["cores"] < demand["cores"]]
        caption += (f" Red line: the declared demand of {demand['cores']:,} cores; a bar below it does not carry "
                    "the demand" + (f" ({', '.join(short)})." if short else " (every bar carries it)."))
    else:
        caption += " No demand is declared in site.yaml, so there is no demand line."
    what = "after the what-if, " if data["whatif"]["synthetic_racks"] else ""
    return {
        "title": f"Cores {what}with every DC and without each one",
        "labels": [label for label, _ in cats], "y_label": "cores",
        "y_max": nice_ceiling(highest * 1.05),
        "series": series, "caption": caption,
    }


def chart(spec: dict[str, Any]) -> str:
    return xychart(spec["title"], spec["labels"], spec["y_label"], spec["y_max"], spec["series"]) + \
        "\n\n" + spec["caption"]


def pool_chart(data: dict[str, Any]) -> str:
    return "\n\n".join(chart(spec) for spec in pool_chart_data(data))


def cores_chart(data: dict[str, Any]) -> str:
    return chart(cores_chart_data(data))
