"""Capacity arithmetic over a site: the numbers behind ``provisioner capacity``. Writes nothing.

Everything here is a pure function of the Site model and the allocation lock; the result is plain data
(dicts, lists, ints, strings) that ``commands/capacity.py`` formats as text, JSON or markdown. Counting
is integer arithmetic over the model (no per-address loops), so a 10 000-node site reports in well under
a second beyond the allocator's own run.

The what-if (``--add-racks``) appends synthetic racks to the model and runs the real allocator
(:func:`provisioner.ipam.allocate`) in memory against the current lock, so the pool numbers are exactly
what a render would produce. When the pools run out, the allocator's first-fit pass is replayed with
:class:`provisioner.ipam._PoolState` to tell which pool runs out first and by how many node prefixes.

Definitions (also in docs/capacity.md):

* **usable pod addresses** of a node prefix: all addresses minus network, broadcast and the ``br0``
  gateway (the ``.254`` of a /24): a /24 gives 253; per-node pod capacity is ``min(usable, max_pods)``.
* **iBGP sessions per ToR**: one per node and per control-plane VM in the rack; the ToR's eBGP uplinks
  (one per spine of its DC) are added for the session limit.
* **routes per ToR / spine** (RIB entries, every ECMP path of an anycast prefix counted once):
  pod node prefixes of every rack whose ToR does not aggregate (``aggregate_pods``), the pool aggregates
  when any rack aggregates, every rack subnet of the site, the ECMP paths of each anycast range and of
  the API /32, and the device's connected fabric /31s. Loopbacks/router ids are not redistributed.
* **ECMP width** of an anycast range: on a ToR, the nodes of its rack (or its uplinks when the rack has
  none); on a spine, the ToRs of its DC that have announcers (or the remote spines when the DC has none).
  The number of announcers in the DC is reported beside it; the limit applies to the per-device widths.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .errors import InputError
from .ipam import Allocations, _PoolState, allocate, taken_addresses
from .load import dotted
from .model import ASN_MAX, NodeGroup, Rack, Site, Tor

# Defaults of the fabric limits: conservative figures for current merchant-silicon data-centre switches
# (Broadcom Trident3/Tomahawk-class ToRs, Trident4/Jericho-class spines, running FRR).
DEFAULT_MAX_SESSIONS_PER_TOR = 256  # BGP neighbours a ToR control plane keeps with fast timers and BFD
DEFAULT_MAX_ROUTES_PER_TOR = 32_768  # IPv4 LPM entries of a ToR in a balanced forwarding profile
DEFAULT_MAX_ROUTES_PER_SPINE = 131_072  # IPv4 LPM entries of a spine
DEFAULT_MAX_ECMP = 128  # next hops in one ECMP group

POOL_PROBLEM_FIELD = "address_plan.pod_pools"
SYNTHETIC_RACK = "{dc}-new{k:02d}"
SYNTHETIC_NODE = "{rack}-n{{index:02d}}"


@dataclass(frozen=True)
class Limits:
    sessions_per_tor: int = DEFAULT_MAX_SESSIONS_PER_TOR
    routes_per_tor: int = DEFAULT_MAX_ROUTES_PER_TOR
    routes_per_spine: int = DEFAULT_MAX_ROUTES_PER_SPINE
    ecmp: int = DEFAULT_MAX_ECMP


@dataclass(frozen=True)
class WhatIf:
    add_racks: dict[str, int] = field(default_factory=dict)
    nodes_per_rack: int | None = None
    lose_dc: str | None = None


def parse_add_racks(text: str | None) -> dict[str, int]:
    """``dc1=4,dc2=10`` -> ``{"dc1": 4, "dc2": 10}``; malformed text is an input error."""
    if text is None:
        return {}
    out: dict[str, int] = {}
    for part in text.split(","):
        dc, sep, count = part.strip().partition("=")
        dc, count = dc.strip(), count.strip()
        if not sep or not dc or not count:
            raise InputError(f"--add-racks: {part.strip()!r} is not DC=N (e.g. --add-racks dc1=4,dc2=10)")
        if not (count.isascii() and count.isdigit()):  # int() would take "1_0" and non-ASCII digits
            raise InputError(f"--add-racks: {count!r} in {part.strip()!r} is not a whole number")
        n = int(count)
        if n < 1:
            raise InputError(f"--add-racks: {part.strip()!r}: the number of racks must be at least 1")
        if dc in out:
            raise InputError(f"--add-racks: {dc} is given twice")
        out[dc] = n
    return out


# --- the what-if site ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Synthetic:
    racks: list[dict[str, Any]]  # what was added, for the report
    problems: list[str]  # racks that could not be placed (no free subnet / ASN)
    site: Site


def _intervals(site: Site) -> list[tuple[int, int]]:
    """Every address range of the site a new rack subnet must stay clear of (inclusive ends)."""
    ap = site.address_plan
    nets: list[IPv4Network] = [p.cidr for p in ap.pod_pools] + list(ap.anycast) + [ap.service_cidr, ap.fabric_pool]
    nets += [r.subnet for dc in site.dcs for r in dc.racks]
    spans = [(int(n.network_address), int(n.broadcast_address)) for n in nets]
    singles: list[IPv4Address] = [ap.api_address]
    for dc in site.dcs:
        singles += [s.router_id for s in dc.spines]
        singles += [r.tor.router_id for r in dc.racks]
    spans += [(int(a), int(a)) for a in singles]
    return spans


def _overlaps(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(s <= end and start <= e for s, e in spans)


def _free_subnets(dc_racks: list[Rack], prefixlen: int, count: int, spans: list[tuple[int, int]]) -> list[IPv4Network]:
    """Deterministic first free subnets of ``prefixlen`` near the DC's racks.

    Search region: the smallest prefix holding all the DC's rack subnets, widened to at least a /16;
    candidates run upward from the end of the DC's highest rack subnet, then wrap to the region start.
    """
    lo = min(int(r.subnet.network_address) for r in dc_racks)
    hi = max(int(r.subnet.broadcast_address) for r in dc_racks)
    region_len = min(16, 32 - (lo ^ hi).bit_length(), prefixlen)
    region = IPv4Network((lo, region_len), strict=False)
    size = 1 << (32 - prefixlen)
    r_start, r_end = int(region.network_address), int(region.broadcast_address)
    first = ((hi + 1 + size - 1) // size) * size
    out: list[IPv4Network] = []
    taken = list(spans)
    candidates = [*range(first, r_end + 1, size), *range(r_start, min(first, r_end + 1), size)]
    for start in candidates:
        end = start + size - 1
        if end > r_end or _overlaps(start, end, taken):
            continue
        out.append(IPv4Network((start, prefixlen)))
        taken.append((start, end))
        if len(out) == count:
            break
    return out


def _host_names(site: Site) -> set[str]:
    names = {dc.name for dc in site.dcs}
    for dc in site.dcs:
        names.update(s.name for s in dc.spines)
        for r in dc.racks:
            names.update((r.name, r.tor.name))
            names.update(n.hostname for n, _ in r.expanded_nodes())
    for role in ("control_plane", "etcd", "etcd_events"):
        names.update(vm.name for vm in getattr(site.vms, role))
    return names


def default_nodes_per_rack(site: Site, dc_name: str) -> int:
    """The median number of nodes per rack of the DC (the lower middle value for an even count)."""
    dc = next(d for d in site.dcs if d.name == dc_name)
    return int(statistics.median_low(len(r.expanded_nodes()) for r in dc.racks))


def common_hardware(site: Site, dc_name: str) -> str | None:
    """The DC's most common node hardware profile (ties: the first by name); the site's if it has none."""
    dc = next(d for d in site.dcs if d.name == dc_name)
    counts = Counter(n.hardware for r in dc.racks for n, _ in r.expanded_nodes())
    if not counts:
        counts = Counter(n.hardware for d in site.dcs for r in d.racks for n, _ in r.expanded_nodes())
    if not counts:
        return None
    best = max(counts.values())
    return min(h for h, c in counts.items() if c == best)


def extend_site(site: Site, add_racks: dict[str, int], nodes_per_rack: int | None) -> Synthetic:
    """The site with synthetic racks appended to the named DCs: fresh names, ASNs and subnets."""
    if not add_racks:
        return Synthetic([], [], site)
    names = _host_names(site)
    used_asns = {r.asn for dc in site.dcs for r in dc.racks} | {s.asn for dc in site.dcs for s in dc.spines}
    spans = _intervals(site)
    added: dict[str, list[Rack]] = {}
    report: list[dict[str, Any]] = []
    problems: list[str] = []
    for dc in site.dcs:
        count = add_racks.get(dc.name, 0)
        if not count:
            continue
        nodes = nodes_per_rack if nodes_per_rack is not None else default_nodes_per_rack(site, dc.name)
        if nodes < 1:
            raise InputError(f"racks of {dc.name} have no nodes to take a median from; give --nodes-per-rack")
        hardware = common_hardware(site, dc.name)
        if hardware is None:
            raise InputError("the site has no nodes to copy a hardware profile from")
        common_len = Counter(r.subnet.prefixlen for r in dc.racks).most_common(1)[0][0]
        prefixlen = min(common_len, 32 - (nodes + 2).bit_length())  # hosts - 2 >= nodes + ToR
        subnets = _free_subnets(dc.racks, prefixlen, count, spans)
        spans += [(int(s.network_address), int(s.broadcast_address)) for s in subnets]
        asn = max(r.asn for r in dc.racks)
        k = 0
        racks: list[Rack] = []
        for subnet in subnets:
            k += 1
            while any(n in names for n in _rack_names(dc.name, k)):
                k += 1
            asn += 1
            while asn in used_asns:
                asn += 1
            if asn > ASN_MAX:
                problems.append(f"no free ASN left for new racks in {dc.name}")
                break
            used_asns.add(asn)
            name, tor_name = _rack_names(dc.name, k)[:2]
            names.update((name, tor_name))
            tor_addr = subnet.network_address + 254 if prefixlen <= 24 else subnet.broadcast_address - 1
            group = NodeGroup.model_construct(count=nodes, name_pattern=SYNTHETIC_NODE.format(rack=name),
                                              first_index=1, hardware=hardware, role="worker", labels={})
            tor = Tor.model_construct(name=tor_name, address=tor_addr, router_id=tor_addr)
            racks.append(Rack.model_construct(name=name, asn=asn, subnet=subnet, tor=tor, nodes=[],
                                              node_groups=[group], bgp_password=None, aggregate_pods=False))
            report.append({"dc": dc.name, "rack": name, "tor": tor_name, "asn": asn, "subnet": str(subnet),
                           "nodes": nodes, "hardware": hardware})
        if len(racks) < count and len(subnets) < count:
            problems.append(f"no free /{prefixlen} rack subnet left near {dc.name}'s racks for "
                            f"{count - len(subnets)} of the {count} new racks")
        added[dc.name] = racks
    dcs = [dc.model_copy(update={"racks": [*dc.racks, *added[dc.name]]}) if added.get(dc.name) else dc
           for dc in site.dcs]
    return Synthetic(report, problems, site.model_copy(update={"dcs": dcs}))


def _rack_names(dc: str, k: int) -> tuple[str, str, str]:
    rack = SYNTHETIC_RACK.format(dc=dc, k=k)
    return rack, f"{rack}-tor", f"{rack}-n01"


# --- allocation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    pod_cidrs: dict[str, IPv4Network]
    exhausted: dict[str, Any] | None  # pool that runs out first and the shortfall
    problems: list[str]  # other reasons the allocation fails (rack subnet full, fabric pool)


def run_allocation(site: Site, lock: Allocations, lock_file: str) -> Outcome:
    """The real allocator in memory; on pool exhaustion, replay its first-fit to explain the shortfall."""
    try:
        allocs, _change = allocate(site, lock, lock_file)
        return Outcome(allocs.pod_cidrs, None, [])
    except InputError as exc:
        pools = [p for p in exc.problems if p.field == POOL_PROBLEM_FIELD]
        fatal = [p for p in exc.problems if p.field != POOL_PROBLEM_FIELD
                 and not p.field.startswith(("racks.", "address_plan.fabric_pool"))]
        if fatal:
            raise
        others = [p.message for p in exc.problems if p not in pools]
    pod_cidrs, exhausted = replay_pods(site, lock)
    return Outcome(pod_cidrs, exhausted, others)


def replay_pods(site: Site, lock: Allocations) -> tuple[dict[str, IPv4Network], dict[str, Any] | None]:
    """The pod pass of ``ipam.allocate``, recording the order in which pools fill up."""
    states = [_PoolState(p) for p in site.address_plan.pod_pools]
    pod_cidrs = dict(lock.pod_cidrs)
    for net in pod_cidrs.values():
        for st in states:
            slot = st.slot_of(net)
            if slot is not None:
                st.used.add(slot)
                break
    filled: dict[str, int] = {st.pool.name: -1 for st in states if st.free == 0}
    seq = 0
    missing: Counter[str] = Counter()
    first_out: str | None = None
    for dc in site.dcs:
        for rack in dc.racks:
            for node, _ in rack.expanded_nodes():
                if node.hostname in pod_cidrs:
                    continue
                eligible = [st for st in states if not st.pool.dcs or dc.name in st.pool.dcs]
                for st in eligible:
                    net = st.take()
                    if net is not None:
                        pod_cidrs[node.hostname] = net
                        if st.free == 0:
                            filled[st.pool.name] = seq
                            seq += 1
                        break
                else:
                    if first_out is None:
                        first_out = min((st.pool.name for st in eligible), key=lambda n: filled.get(n, 1 << 30),
                                        default="(no pool serves this DC)")
                    missing[dc.name] += 1
    if not missing:
        return pod_cidrs, None
    pool = next((p for p in site.address_plan.pod_pools if p.name == first_out), None)
    return pod_cidrs, {
        "pool": first_out,
        "node_prefix_len": pool.node_prefix_len if pool else None,
        "missing": sum(missing.values()),
        "missing_per_dc": dict(sorted(missing.items())),
    }


# --- the report ------------------------------------------------------------------------------------


def capacity_report(site: Site, lock: Allocations, whatif: WhatIf | None = None, limits: Limits | None = None,
                    lock_file: str = "allocations.yaml") -> dict[str, Any]:
    """The whole capacity report as plain data. ``fits`` is false with ``reasons`` when anything fails."""
    whatif = whatif or WhatIf()
    limits = limits or Limits()
    dc_names = [dc.name for dc in site.dcs]
    for dc in [*whatif.add_racks, *([whatif.lose_dc] if whatif.lose_dc else [])]:
        if dc not in dc_names:
            raise InputError(f"unknown data centre {dc!r} (the site has {', '.join(dc_names)})")
    if whatif.nodes_per_rack is not None and whatif.nodes_per_rack < 1:
        raise InputError("--nodes-per-rack must be at least 1")
    if whatif.nodes_per_rack is not None and whatif.nodes_per_rack > 512:
        raise InputError("--nodes-per-rack must be at most 512 (the limit of a node group)")
    for dc, n in whatif.add_racks.items():
        if n < 1:
            raise InputError(f"--add-racks {dc}={n}: the number of racks must be at least 1")

    synthetic = extend_site(site, whatif.add_racks, whatif.nodes_per_rack)
    scenario = synthetic.site
    conflicts: list[str] = []
    if synthetic.racks:  # the base site is valid, so anything found here comes from the synthetic racks
        from .validate import site_problems

        conflicts = [f"new racks conflict with the site: {dotted(loc)}: {msg}" for loc, msg in site_problems(scenario)]
    outcome = run_allocation(scenario, lock, lock_file)
    live = [(dc.name, rack, node) for dc in scenario.dcs for rack in dc.racks for node, _ in rack.expanded_nodes()]

    pools = pool_section(scenario, lock, outcome.pod_cidrs, {n.hostname for _, _, n in live})
    pods = pod_section(scenario, live, outcome.pod_cidrs, whatif.lose_dc)
    compute = compute_section(scenario, live, whatif.lose_dc)
    fabric = fabric_section(scenario, live, limits)
    control = control_plane_section(scenario, whatif.lose_dc)
    racks = rack_section(scenario, lock, live)

    reasons: list[str] = []
    if outcome.exhausted:
        e = outcome.exhausted
        per_dc = ", ".join(f"{d}: {n}" for d, n in e["missing_per_dc"].items())
        reasons.append(f"pod pools exhausted: pool {e['pool']} runs out first; {e['missing']} more "
                       f"/{e['node_prefix_len']} node prefixes are needed ({per_dc})")
    reasons += synthetic.problems
    reasons += conflicts
    reasons += outcome.problems
    demand = site.demand
    if demand is not None and not compute["total"]["carries_demand"]:
        reasons.append(f"the site does not carry the declared demand ({demand.cores} cores, "
                       f"{demand.memory_gib} GiB): it has {compute['total']['cores']} cores, "
                       f"{compute['total']['memory_gib']} GiB")
    if whatif.lose_dc:
        after = compute["lose_dc"]
        if demand is not None and not after["carries_demand"]:
            reasons.append(f"losing {whatif.lose_dc} leaves {after['cores']} cores and {after['memory_gib']} GiB "
                           f"for a declared demand of {demand.cores} cores and {demand.memory_gib} GiB "
                           f"(short by {max(0, -after['headroom_cores'])} cores, "
                           f"{max(0, -after['headroom_memory_gib'])} GiB)")
        for cluster in control["clusters"]:
            if not cluster["survives"][whatif.lose_dc]:
                reasons.append(f"losing {whatif.lose_dc} leaves {cluster['name']} without "
                               f"{'quorum' if cluster['quorum'] > 1 else 'a member'} "
                               f"({cluster['remaining'][whatif.lose_dc]} of {cluster['members']} left, "
                               f"{cluster['quorum']} needed)")
    reasons += [c["message"] for c in fabric["checks"] if not c["ok"]]

    return {
        "site": site.site,
        "fits": not reasons,
        "reasons": reasons,
        "whatif": {
            "add_racks": dict(whatif.add_racks),
            "nodes_per_rack": whatif.nodes_per_rack,
            "lose_dc": whatif.lose_dc,
            "synthetic_racks": synthetic.racks,
            "nodes_added": sum(r["nodes"] for r in synthetic.racks),
        },
        "limits": {"max_sessions_per_tor": limits.sessions_per_tor, "max_routes_per_tor": limits.routes_per_tor,
                   "max_routes_per_spine": limits.routes_per_spine, "max_ecmp": limits.ecmp},
        "pools": pools,
        "pods": pods,
        "compute": compute,
        "fabric": fabric,
        "control_plane": control,
        "racks": racks,
    }


def pool_section(site: Site, lock: Allocations, pod_cidrs: dict[str, IPv4Network],
                 live_names: set[str]) -> dict[str, Any]:
    """Slots per pool: allocated (orphans included), free, largest free run, utilisation, nodes that fit."""
    pools = site.address_plan.pod_pools
    geo = [(int(p.cidr.network_address), 1 << (32 - p.node_prefix_len), 1 << (p.node_prefix_len - p.cidr.prefixlen),
            p.node_prefix_len) for p in pools]

    def pool_of(net: IPv4Network) -> tuple[int, int] | None:
        addr = int(net.network_address)
        for i, (base, step, size, plen) in enumerate(geo):
            if net.prefixlen == plen and base <= addr < base + step * size:
                return i, (addr - base) // step
        return None

    used: list[set[int]] = [set() for _ in pools]
    orphaned = [0] * len(pools)
    for owner, net in pod_cidrs.items():
        hit = pool_of(net)
        if hit is not None:
            used[hit[0]].add(hit[1])
            if owner not in live_names:
                orphaned[hit[0]] += 1
    locked = [0] * len(pools)
    for net in lock.pod_cidrs.values():
        hit = pool_of(net)
        if hit is not None:
            locked[hit[0]] += 1
    rows = []
    for i, p in enumerate(pools):
        base, step, size, plen = geo[i]
        run, run_start, prev = 0, 0, -1
        for slot in [*sorted(used[i]), size]:
            if slot - prev - 1 > run:
                run, run_start = slot - prev - 1, prev + 1
            prev = slot
        allocated = len(used[i])
        rows.append({
            "name": p.name, "cidr": str(p.cidr), "node_prefix_len": plen, "dcs": list(p.dcs),
            "size": size, "locked_now": locked[i], "allocated": allocated, "orphaned": orphaned[i],
            "free": size - allocated, "largest_free_block": run,
            "largest_free_block_start": str(IPv4Network((base + run_start * step, plen))) if run else None,
            "utilisation_pct": _pct(allocated, size),
        })
    size = sum(r["size"] for r in rows)
    allocated = sum(r["allocated"] for r in rows)
    more = {dc.name: sum(r["free"] for r, p in zip(rows, pools, strict=True) if not p.dcs or dc.name in p.dcs)
            for dc in site.dcs}
    return {
        "pools": rows,
        "total": {"size": size, "allocated": allocated, "orphaned": sum(orphaned), "free": size - allocated,
                  "locked_now": sum(locked), "largest_free_block": max((r["largest_free_block"] for r in rows),
                                                                         default=0),
                  "utilisation_pct": _pct(allocated, size), "more_nodes_fit": size - allocated},
        "more_nodes_fit": more,
    }


def pods_per_prefix(prefixlen: int, max_pods: int) -> int:
    """Pods one node can run: usable addresses of its prefix (minus network, broadcast, br0) vs max_pods."""
    return max(0, min((1 << (32 - prefixlen)) - 3, max_pods))


def pod_section(site: Site, live: list, pod_cidrs: dict[str, IPv4Network], lose_dc: str | None) -> dict[str, Any]:
    max_pods = site.address_plan.max_pods
    per_pool = [{"pool": p.name, "node_prefix_len": p.node_prefix_len,
                 "usable_addresses": max(0, (1 << (32 - p.node_prefix_len)) - 3), "max_pods": max_pods,
                 "pods_per_node": pods_per_prefix(p.node_prefix_len, max_pods),
                 "limited_by": "max_pods" if max_pods <= (1 << (32 - p.node_prefix_len)) - 3 else "prefix"}
                for p in site.address_plan.pod_pools]
    per_dc: dict[str, int] = {dc.name: 0 for dc in site.dcs}
    without = 0
    for dc, _rack, node in live:
        net = pod_cidrs.get(node.hostname)
        if net is None:
            without += 1
            continue
        per_dc[dc] += pods_per_prefix(net.prefixlen, max_pods)
    total = sum(per_dc.values())
    out = {"per_pool": per_pool, "per_dc": per_dc, "total": total, "nodes_without_prefix": without}
    if lose_dc:
        out["after_losing"] = {"dc": lose_dc, "total": total - per_dc[lose_dc]}
    return out


def compute_section(site: Site, live: list, lose_dc: str | None) -> dict[str, Any]:
    """Cores and memory of the nodes (VMs are not pod capacity), per DC, in total and N-1."""
    per_dc = {dc.name: {"nodes": 0, "cores": 0, "memory_gib": 0} for dc in site.dcs}
    for dc, _rack, node in live:
        hw = site.hardware[node.hardware]
        row = per_dc[dc]
        row["nodes"] += 1
        row["cores"] += hw.cores
        row["memory_gib"] += hw.memory_gib
    demand = site.demand

    def carry(cores: int, memory: int, nodes: int) -> dict[str, Any]:
        out: dict[str, Any] = {"nodes": nodes, "cores": cores, "memory_gib": memory}
        if demand is not None:
            out |= {"headroom_cores": cores - demand.cores, "headroom_memory_gib": memory - demand.memory_gib,
                    "carries_demand": cores >= demand.cores and memory >= demand.memory_gib}
        else:
            out["carries_demand"] = None
        return out

    t = {k: sum(r[k] for r in per_dc.values()) for k in ("nodes", "cores", "memory_gib")}
    total = carry(t["cores"], t["memory_gib"], t["nodes"])
    n_minus_1 = {name: carry(t["cores"] - r["cores"], t["memory_gib"] - r["memory_gib"], t["nodes"] - r["nodes"])
                 for name, r in per_dc.items()}
    out: dict[str, Any] = {
        "per_dc": per_dc, "total": total,
        "demand": {"cores": demand.cores, "memory_gib": demand.memory_gib} if demand else None,
        "without_dc": n_minus_1,
    }
    if lose_dc:
        out["lose_dc"] = {"dc": lose_dc, **n_minus_1[lose_dc]}
    return out


def fabric_section(site: Site, live: list, limits: Limits) -> dict[str, Any]:
    """Sessions, routes and ECMP widths per ToR and spine (see the module docstring for definitions)."""
    ap = site.address_plan
    nodes_in: Counter[str] = Counter(rack.name for _dc, rack, _n in live)
    cp_in: Counter[str] = Counter(vm.rack for vm in site.vms.control_plane)
    any_agg = any(r.aggregate_pods for dc in site.dcs for r in dc.racks)
    aggregates = len(ap.pod_pools) if any_agg else 0
    racks_total = sum(len(dc.racks) for dc in site.dcs)
    non_agg_pods = sum(nodes_in[r.name] for dc in site.dcs for r in dc.racks if not r.aggregate_pods)
    anycast = len(ap.anycast)
    spines_of = {dc.name: len(dc.spines) for dc in site.dcs}
    nodes_of = {dc.name: sum(nodes_in[r.name] for r in dc.racks) for dc in site.dcs}
    cp_of = {dc.name: sum(cp_in[r.name] for r in dc.racks) for dc in site.dcs}
    total_spines = sum(spines_of.values())

    def spine_paths(dc_name: str, per_rack: Counter[str], per_dc: dict[str, int]) -> int:
        dc = next(d for d in site.dcs if d.name == dc_name)
        local = sum(1 for r in dc.racks if per_rack[r.name] > 0)
        if local:
            return local
        return sum(spines_of[d] for d in spines_of if d != dc_name and per_dc[d] > 0)

    tors = []
    for dc in site.dcs:
        spines = spines_of[dc.name]
        for r in dc.racks:
            n, cp = nodes_in[r.name], cp_in[r.name]
            anycast_paths = n if n else spines
            pods = n + non_agg_pods - (0 if r.aggregate_pods else n) + aggregates
            routes = pods + racks_total + anycast * anycast_paths + (cp if cp else spines) + spines
            tors.append({"tor": r.tor.name, "dc": dc.name, "rack": r.name, "ibgp_sessions": n + cp,
                         "ebgp_sessions": spines, "sessions": n + cp + spines, "pod_routes": pods,
                         "routes": routes, "ecmp": anycast_paths})
    spine_rows = []
    for dc in site.dcs:
        paths = spine_paths(dc.name, nodes_in, nodes_of)
        api_paths = spine_paths(dc.name, cp_in, cp_of)
        downlinks = len(dc.racks)
        peers = total_spines - spines_of[dc.name]
        routes = non_agg_pods + aggregates + racks_total + anycast * paths + api_paths + downlinks + peers
        for s in dc.spines:
            spine_rows.append({"spine": s.name, "dc": dc.name, "sessions": downlinks + peers, "routes": routes,
                               "ecmp": paths})
    ecmp = []
    for dc in site.dcs:
        tor_w = max((t["ecmp"] for t in tors if t["dc"] == dc.name), default=0)
        spine_w = spine_paths(dc.name, nodes_in, nodes_of)
        for net in ap.anycast:
            ecmp.append({"anycast": str(net), "dc": dc.name, "announcers": nodes_of[dc.name],
                         "tor_width": tor_w, "spine_width": spine_w, "width": max(tor_w, spine_w)})

    def check(what: str, rows: list[dict], key: str, name: str, limit: int, flag: str) -> dict[str, Any]:
        worst = max(rows, key=lambda r: r[key], default=None)
        value = worst[key] if worst else 0
        where = worst[name] if worst else "-"
        ok = value <= limit
        msg = f"{what}: {value} at {where} (limit {limit})" if ok else \
            f"{what} exceeds the limit: {value} at {where} > {limit} ({flag})"
        return {"what": what, "value": value, "at": where, "limit": limit, "ok": ok, "message": msg}

    checks = [
        check("BGP sessions per ToR", tors, "sessions", "tor", limits.sessions_per_tor, "--max-sessions-per-tor"),
        check("routes per ToR", tors, "routes", "tor", limits.routes_per_tor, "--max-routes-per-tor"),
        check("routes per spine", spine_rows, "routes", "spine", limits.routes_per_spine, "--max-routes-per-spine"),
        check("ECMP width", [{**e, "at": f"{e['anycast']} in {e['dc']}"} for e in ecmp], "width", "at",
              limits.ecmp, "--max-ecmp"),
    ]
    return {"tors": tors, "spines": spine_rows, "ecmp": ecmp, "checks": checks,
            "max": {"sessions_per_tor": checks[0]["value"], "routes_per_tor": checks[1]["value"],
                    "routes_per_spine": checks[2]["value"], "ecmp": checks[3]["value"]}}


def control_plane_section(site: Site, lose_dc: str | None) -> dict[str, Any]:
    """Members per DC of main etcd, events etcd and the API servers; survival of losing each DC."""
    dcs = [dc.name for dc in site.dcs]
    clusters = []
    for name, vms, quorum_of in (("etcd", site.vms.etcd, _quorum), ("etcd-events", site.vms.etcd_events, _quorum),
                                 ("kube-apiserver", site.vms.control_plane, lambda n: 1)):
        per_dc = Counter(vm.dc for vm in vms)
        n = len(vms)
        quorum = quorum_of(n)
        remaining = {d: n - per_dc[d] for d in dcs}
        clusters.append({"name": name, "members": n, "quorum": quorum,
                         "per_dc": {d: per_dc[d] for d in dcs}, "remaining": remaining,
                         "survives": {d: remaining[d] >= quorum for d in dcs},
                         "survives_any_single_dc": all(remaining[d] >= quorum for d in dcs)})
    return {"clusters": clusters, "lose_dc": lose_dc}


def _quorum(members: int) -> int:
    return members // 2 + 1


def rack_section(site: Site, lock: Allocations, live: list) -> dict[str, Any]:
    """Free host addresses per rack subnet: hosts minus ToR, explicit nodes, VMs, locked and pending nodes."""
    racks = [(dc.name, r) for dc in site.dcs for r in dc.racks]
    by_net: dict[tuple[int, int], int] = {}
    plens = sorted({r.subnet.prefixlen for _, r in racks})
    for i, (_dc, r) in enumerate(racks):
        by_net[(r.subnet.prefixlen, int(r.subnet.network_address))] = i

    def rack_of(addr: IPv4Address) -> int | None:
        a = int(addr)
        for plen in plens:
            i = by_net.get((plen, a & (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF))
            if i is not None:
                return i
        return None

    # The allocator's own view (ToR, router ids and the API address inside the subnet, explicit nodes, VMs).
    by_rack = taken_addresses(site)
    taken: list[set[int]] = [{int(a) for a in by_rack[r.name]} for _, r in racks]
    index = {r.name: i for i, (_, r) in enumerate(racks)}
    for addr in lock.node_addresses.values():
        i = rack_of(addr)
        if i is not None:
            taken[i].add(int(addr))
    pending = [0] * len(racks)
    nodes = [0] * len(racks)
    for _dc, rack, node in live:
        i = index[rack.name]
        nodes[i] += 1
        if node.address is None:
            locked = lock.node_addresses.get(node.hostname)
            if locked is None or rack_of(locked) != i:
                pending[i] += 1
    rows = []
    for i, (dc, r) in enumerate(racks):
        hosts = max(0, r.subnet.num_addresses - 2)
        free = hosts - len(taken[i]) - pending[i]
        rows.append({"rack": r.name, "dc": dc, "subnet": str(r.subnet), "hosts": hosts, "nodes": nodes[i],
                     "used": len(taken[i]) + pending[i], "free": free})
    per_dc = {}
    for dc in site.dcs:
        mine = [r for r in rows if r["dc"] == dc.name]
        tightest = min(mine, key=lambda r: (r["free"], r["rack"]))
        per_dc[dc.name] = {"racks": len(mine), "free": sum(r["free"] for r in mine),
                           "min_free": tightest["free"], "min_free_rack": tightest["rack"]}
    return {"racks": rows, "per_dc": per_dc}


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0
