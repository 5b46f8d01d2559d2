"""Capacity arithmetic over a site: the numbers behind ``provisioner capacity``. Writes nothing.

Everything here is a pure function of the Site model and the allocation lock; the result is plain data
(dicts, lists, ints, strings) that ``commands/capacity.py`` formats as text, JSON or markdown. Counting
is integer arithmetic over the model (no per-address loops), so a 10 000-node site reports in well under
a second beyond the allocator's own run.

The what-if (``--add-racks``) appends synthetic racks to the model and runs the real allocator
(:func:`provisioner.ipam.allocate`) in memory against the current lock, so the pool numbers are exactly
what a render would produce. When the pools run out, the allocator's first-fit pass is replayed over
:func:`provisioner.ipam.pod_pool_slots` (the allocator's own pool state) to tell which pool runs out
first and by how many node prefixes.

Definitions (also in docs/capacity.md):

* **usable pod addresses** of a node prefix: all addresses minus network, broadcast and the ``br0``
  gateway (the ``.254`` of a /24): a /24 gives 253; per-node pod capacity is ``min(usable, max_pods)``.
* **fabric limits** (iBGP sessions per ToR, prefixes per ToR and spine, ECMP width) and **pool headroom**
  are measured by :mod:`provisioner.limits` on the Plan of the what-if site and judged by the very LIM and
  CAP checks ``provisioner check`` runs, with the same defaults, ``check.yaml`` and waivers: capacity and
  check cannot disagree. An error means "does not fit"; a warning (CAP001) "fits with warnings".
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from .check import CheckOptions, Finding, Waiver, apply_waivers, check_capacity, check_limits, sort_key
from .errors import InputError
from .ipam import AllocationChange, Allocations, allocate, pod_pool_slots, taken_addresses
from .limits import Limits, headroom_threshold, spine_usage, tor_usage, worst
from .model import ASN_MAX, NodeGroup, Rack, Site, Tor
from .plan import Plan, build_plan
from .util import dotted
from .validate import site_problems

POOL_PROBLEM_FIELD = "address_plan.pod_pools"
SYNTHETIC_RACK = "{dc}-new{k:02d}"
SYNTHETIC_NODE = "{rack}-n{{index:02d}}"


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
    allocations: Allocations | None = None  # when the allocation succeeded: what a render would lock
    change: AllocationChange | None = None


def run_allocation(site: Site, lock: Allocations, lock_file: str) -> Outcome:
    """The real allocator in memory; on pool exhaustion, replay its first-fit to explain the shortfall."""
    try:
        allocs, change = allocate(site, lock, lock_file)
        return Outcome(allocs.pod_cidrs, None, [], allocs, change)
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
    states, _outside = pod_pool_slots(site, lock.pod_cidrs)
    pod_cidrs = dict(lock.pod_cidrs)
    filled: dict[str, int] = {st.pool.name: -1 for st in states if st.free == 0}
    seq = 0
    missing: Counter[str] = Counter()
    first_out: str | None = None
    for dc in site.dcs:
        for rack in dc.racks:
            for node, _ in rack.expanded_nodes():
                if node.hostname in pod_cidrs:
                    continue
                eligible = [st for st in states if st.serves(dc.name)]
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


VERDICTS = ("fits", "fits with warnings", "does not fit")
LIMIT_CHECKS = ("CAP", "LIM")  # the check families capacity runs on the what-if site


def capacity_report(site: Site, lock: Allocations, whatif: WhatIf | None = None, limits: Limits | None = None,
                    lock_file: str = "allocations.yaml", waivers: Sequence[Waiver] = ()) -> dict[str, Any]:
    """The whole capacity report as plain data.

    ``verdict`` is "fits", "fits with warnings" (CAP/LIM warnings, listed in ``warnings``) or "does not fit"
    (``reasons`` first: pool exhaustion, demand, quorum, and every LIM/CAP error of the what-if site, found
    by the same checks ``provisioner check`` runs, with the same limits and waivers).
    """
    whatif = whatif or WhatIf()
    limits = limits or Limits()
    _validate_whatif(site, whatif)

    synthetic = extend_site(site, whatif.add_racks, whatif.nodes_per_rack)
    scenario = synthetic.site
    conflicts: list[str] = []
    if synthetic.racks:  # the base site is valid, so anything found here comes from the synthetic racks
        conflicts = [f"new racks conflict with the site: {dotted(loc)}: {msg}" for loc, msg in site_problems(scenario)]
    outcome = run_allocation(scenario, lock, lock_file)
    live = [(dc.name, rack, node) for dc in scenario.dcs for rack in dc.racks for node, _ in rack.expanded_nodes()]

    pools = pool_section(scenario, lock, outcome.pod_cidrs, live, limits)
    pods = pod_section(scenario, live, outcome.pod_cidrs, whatif.lose_dc)
    compute = compute_section(scenario, live, whatif.lose_dc)
    control = control_plane_section(scenario, whatif.lose_dc)
    racks = rack_section(scenario, lock, live)
    plan = None
    if outcome.allocations is not None and outcome.change is not None and not conflicts:
        plan = build_plan(scenario, outcome.allocations, outcome.change)
    fabric = fabric_section(plan, limits)
    findings = limit_findings(plan, limits, waivers)

    reasons: list[str] = []
    if outcome.exhausted:
        e = outcome.exhausted
        per_dc = ", ".join(f"{d}: {n}" for d, n in e["missing_per_dc"].items())
        reasons.append(f"pod pools exhausted: pool {e['pool']} runs out first; {e['missing']} more "
                       f"/{e['node_prefix_len']} node prefixes are needed ({per_dc})")
    reasons += synthetic.problems
    reasons += conflicts
    reasons += outcome.problems
    reasons += _demand_and_quorum_reasons(site, compute, control, whatif.lose_dc)
    live_findings = [f for f in findings if not f.waived]
    reasons += [f"{f.id} {f.message}" for f in live_findings if f.severity == "error"]
    warnings = [f"{f.id} {f.message}" for f in live_findings if f.severity == "warning"]
    verdict = VERDICTS[2] if reasons else (VERDICTS[1] if warnings else VERDICTS[0])

    return {
        "site": site.site,
        "verdict": verdict,
        "fits": not reasons,
        "reasons": reasons,
        "warnings": warnings,
        "findings": [f.as_dict() for f in findings],
        "whatif": {
            "add_racks": dict(whatif.add_racks),
            "nodes_per_rack": whatif.nodes_per_rack,
            "lose_dc": whatif.lose_dc,
            "synthetic_racks": synthetic.racks,
            "nodes_added": sum(r["nodes"] for r in synthetic.racks),
        },
        "limits": limits.as_dict(),
        "pools": pools,
        "pods": pods,
        "compute": compute,
        "fabric": fabric,
        "control_plane": control,
        "racks": racks,
    }


def _demand_and_quorum_reasons(site: Site, compute: dict[str, Any], control: dict[str, Any],
                               lose_dc: str | None) -> list[str]:
    """Why the site does not fit its declared demand, as it is or after losing ``lose_dc``, or loses quorum."""
    reasons: list[str] = []
    demand = site.demand
    if demand is not None and not compute["total"]["carries_demand"]:
        reasons.append(f"the site does not carry the declared demand ({demand.cores} cores, "
                       f"{demand.memory_gib} GiB): it has {compute['total']['cores']} cores, "
                       f"{compute['total']['memory_gib']} GiB")
    if not lose_dc:
        return reasons
    after = compute["lose_dc"]
    if demand is not None and not after["carries_demand"]:
        reasons.append(f"losing {lose_dc} leaves {after['cores']} cores and {after['memory_gib']} GiB "
                       f"for a declared demand of {demand.cores} cores and {demand.memory_gib} GiB "
                       f"(short by {max(0, -after['headroom_cores'])} cores, "
                       f"{max(0, -after['headroom_memory_gib'])} GiB)")
    for cluster in control["clusters"]:
        if not cluster["survives"][lose_dc]:
            reasons.append(f"losing {lose_dc} leaves {cluster['name']} without "
                           f"{'quorum' if cluster['quorum'] > 1 else 'a member'} "
                           f"({cluster['remaining'][lose_dc]} of {cluster['members']} left, "
                           f"{cluster['quorum']} needed)")
    return reasons


def _validate_whatif(site: Site, whatif: WhatIf) -> None:
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


def limit_findings(plan: Plan | None, limits: Limits, waivers: Sequence[Waiver] = ()) -> list[Finding]:
    """The LIM and CAP findings of ``provisioner check`` on this Plan, with the site's waivers applied."""
    if plan is None:
        return []
    values: dict[str, Any] = limits.as_dict()
    opts = CheckOptions(**values)
    found = [f for f in [*check_capacity(plan, opts), *check_limits(plan, opts)] if f.id.startswith(LIMIT_CHECKS)]
    relevant = [w for w in waivers if w.id.startswith(LIMIT_CHECKS)]
    waived = apply_waivers(found, relevant, date.today())
    return sorted((f for f in waived if not f.id.startswith("WVR")), key=sort_key)


def max_racks(site: Site, lock: Allocations, dc: str, whatif: WhatIf, limits: Limits, lock_file: str,
              waivers: Sequence[Waiver] = ()) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """How many racks (of ``whatif.nodes_per_rack`` or the DC's median) still fit in ``dc``.

    Adding racks only ever uses more (prefixes, sessions, ECMP paths), so the answer is found by binary
    search over real what-if runs. Returns (racks, report with that many added, report with one more).
    """
    _validate_whatif(site, whatif)
    if dc not in [d.name for d in site.dcs]:
        raise InputError(f"--max-racks: unknown data centre {dc!r} (the site has "
                         f"{', '.join(d.name for d in site.dcs)})")
    nodes = whatif.nodes_per_rack or default_nodes_per_rack(site, dc)
    free = sum(1 << (p.node_prefix_len - p.cidr.prefixlen) for p in site.address_plan.pod_pools
               if not p.dcs or dc in p.dcs)
    cache: dict[int, dict[str, Any]] = {}

    def run(k: int) -> dict[str, Any]:
        if k not in cache:
            add = dict(whatif.add_racks)
            if k:
                add[dc] = add.get(dc, 0) + k
            cache[k] = capacity_report(site, lock, WhatIf(add, whatif.nodes_per_rack, whatif.lose_dc), limits,
                                       lock_file, waivers)
        return cache[k]

    if not run(0)["fits"]:
        return 0, run(0), None
    lo, hi = 0, min(free // max(nodes, 1) + 1, 4096)  # lo fits; hi: more racks than the pools can hold
    while run(hi)["fits"] and hi < 4096:
        lo, hi = hi, min(hi * 2, 4096)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid)["fits"]:
            lo = mid
        else:
            hi = mid
    return lo, run(lo), run(lo + 1)


def pool_section(site: Site, lock: Allocations, pod_cidrs: dict[str, IPv4Network], live: list,
                 limits: Limits) -> dict[str, Any]:
    """Slots per pool: allocated (orphans included), free, largest free run, utilisation, nodes that fit,
    and the CAP001 headroom the pool should keep (the same rule ``check`` applies)."""
    live_names = {node.hostname for _, _, node in live}
    rack_sizes: dict[str, Counter[str]] = {}
    for dc, rack, _node in live:
        rack_sizes.setdefault(dc, Counter())[rack.name] += 1
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
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(pools):
        base, step, size, plen = geo[i]
        run, run_start, prev = 0, 0, -1
        for slot in [*sorted(used[i]), size]:
            if slot - prev - 1 > run:
                run, run_start = slot - prev - 1, prev + 1
            prev = slot
        allocated = len(used[i])
        threshold, basis = headroom_threshold(p.dcs or [dc.name for dc in site.dcs], rack_sizes, limits)
        rows.append({
            "name": p.name, "cidr": str(p.cidr), "node_prefix_len": plen, "dcs": list(p.dcs),
            "size": size, "locked_now": locked[i], "allocated": allocated, "orphaned": orphaned[i],
            "free": size - allocated, "largest_free_block": run,
            "largest_free_block_start": str(IPv4Network((base + run_start * step, plen))) if run else None,
            "utilisation_pct": _pct(allocated, size), "locked_now_pct": _pct(locked[i], size),
            "headroom_threshold": threshold, "headroom_basis": basis,
            "headroom_limit_pct": _pct(max(0, size - threshold), size),
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


def fabric_section(plan: Plan | None, limits: Limits) -> dict[str, Any]:
    """Sessions, prefixes and ECMP widths per ToR and spine, measured as ``check`` measures them
    (provisioner/limits.py), with the worst value of each limit. Empty when the what-if cannot be planned."""
    if plan is None:
        return {"tors": [], "spines": [], "ecmp": [], "checks": [], "max": {}}
    tors = tor_usage(plan)
    spines = spine_usage(plan, tors)
    announcers: Counter[tuple[str, str]] = Counter()
    for n in plan.nodes:
        for p in n.session.a_announces:
            announcers[(n.dc, str(p))] += 1
    ecmp = []
    for dc in plan.dcs:
        for net in plan.anycast:
            rng = str(net)
            tor_w = max((t["ecmp"].get(rng, 0) for t in tors if t["dc"] == dc), default=0)
            spine_w = max((s["ecmp"].get(rng, 0) for s in spines if s["dc"] == dc), default=0)
            ecmp.append({"anycast": rng, "dc": dc, "announcers": announcers[(dc, rng)],
                         "tor_width": tor_w, "spine_width": spine_w, "width": max(tor_w, spine_w)})
    checks = []
    for row in worst(plan, limits):
        ok = row["ok"]
        row["message"] = (f"{row['what']}: {row['value']} at {row['at']} (limit {row['limit']})" if ok else
                          f"{row['what']} exceeds the limit: {row['value']} at {row['at']} > {row['limit']} "
                          f"({row['check']}, {row['flag']})")
        checks.append(row)
    return {"tors": tors, "spines": spines, "ecmp": ecmp, "checks": checks,
            "max": {c["limit_key"]: c["value"] for c in checks}}


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
        at = rack_of(addr)
        if at is not None:
            taken[at].add(int(addr))
    pending = [0] * len(racks)
    nodes = [0] * len(racks)
    for _dc, rack, node in live:
        i = index[rack.name]
        nodes[i] += 1
        if node.address is None:
            locked = lock.node_addresses.get(node.hostname)
            if locked is None or rack_of(locked) != i:
                pending[i] += 1
    rows: list[dict[str, Any]] = []
    for i, (dc_name, r) in enumerate(racks):
        hosts = max(0, r.subnet.num_addresses - 2)
        free = hosts - len(taken[i]) - pending[i]
        rows.append({"rack": r.name, "dc": dc_name, "subnet": str(r.subnet), "hosts": hosts, "nodes": nodes[i],
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
