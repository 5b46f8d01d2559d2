"""A scale twin: any site renumbered into the lab range (198.18.0.0/15) by a deterministic mapping, so the lab can
bring up its whole topology (same DCs, racks, nodes, switches, VMs, upstreams, sessions, ASNs, ECMP widths and
limits) on one machine without configuring a single address outside the range.

The mapping (docs/lab.md, "The scale twin"):

1. **Pod pools** are packed, in declared order and each aligned to its size, into ``198.19.0.0/17``, every pool
   shortened by the same ``s`` bits (the smallest that fits): pool ``/p`` becomes ``/(p+s)``, node prefix ``/n``
   becomes ``/(n+s)``. A node keeps its index in its pool, so the k-th ``/24`` becomes the k-th ``/(24+s)``, and
   every pool keeps its number of node prefixes (its headroom). ``max_pods`` is lowered to what a
   ``/(n+s)`` holds (its size minus 3) if it is larger.
2. The **service CIDR** becomes ``198.19.128.0/L``, L = max(its length, 20).
3. **Everything else** (rack subnets, the fabric pool, anycast ranges, and the ``/24`` around every router id,
   node, VM and API address) is a *block*: each block, at its own size (at least a /24), is moved to the next
   free aligned block of ``198.18.0.0/16`` in ascending order of source address, keeping host bits, so
   ``10.1.1.7`` in rack ``10.1.1.0/24`` becomes ``.7`` of that rack's twin /24. ``198.18.255.0/24`` is never used
   (the lab's "outside" address lives there); ``198.19.240.0/20`` (management) is never touched.
4. Names, ASNs, hardware, timers, limits and counts are unchanged; the site is named ``<site>-twin``. BGP
   passwords (secret names) are dropped: the lab injects no secrets.

The twin's allocations.yaml is the source's renumbered entry by entry (nothing is re-allocated), and
:func:`compare` proves the twin's Plan has the same shape as the source's.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from ..ipam import Allocations, dump_lock
from ..plan import Plan
from .topology import LAB_RANGE, MGMT_RANGE, OUTSIDE, TopologyError

POD_SPACE = IPv4Network("198.19.0.0/17")
SERVICE_BASE = IPv4Address("198.19.128.0")
SERVICE_MAX = 20
BLOCK_SPACE = IPv4Network("198.18.0.0/16")
RESERVED = (IPv4Network(f"{OUTSIDE}/24", strict=False),)
MIN_BLOCK = 24
MAX_NODE_PREFIX = 28  # model limit of node_prefix_len
HEADER = "# Scale twin of site"


class TwinError(TopologyError):
    """The source site cannot be renumbered into the lab range (exit 2)."""


@dataclass(frozen=True)
class PoolMap:
    name: str
    source: IPv4Network
    source_len: int
    twin: IPv4Network
    twin_len: int

    def node_prefix(self, net: IPv4Network) -> IPv4Network:
        index = (int(net.network_address) - int(self.source.network_address)) >> (32 - self.source_len)
        start = int(self.twin.network_address) + (index << (32 - self.twin_len))
        return IPv4Network((start, self.twin_len))


@dataclass
class Mapping:
    """Source block -> twin block, pools, service CIDR; ``address``/``network`` translate one value."""

    blocks: list[tuple[IPv4Network, IPv4Network]] = field(default_factory=list)
    pools: list[PoolMap] = field(default_factory=list)
    shift: int = 0
    service: tuple[IPv4Network, IPv4Network] | None = None
    max_pods: tuple[int, int] = (0, 0)

    def address(self, value: str | IPv4Address) -> IPv4Address:
        a = IPv4Address(str(value))
        for src, dst in self.blocks:
            if a in src:
                return dst.network_address + (int(a) - int(src.network_address))
        raise TwinError(f"{a}: in no block of the mapping")

    def network(self, value: str | IPv4Network) -> IPv4Network:
        net = IPv4Network(str(value))
        if any(net.subnet_of(src) for src, _ in self.blocks):
            return IPv4Network((int(self.address(net.network_address)), net.prefixlen))
        if self.service and net == self.service[0]:
            return self.service[1]
        raise TwinError(f"{net}: in no block of the mapping")

    def pod_prefix(self, net: IPv4Network) -> IPv4Network:
        for p in self.pools:
            if net.subnet_of(p.source):
                return p.node_prefix(net)
        raise TwinError(f"pod prefix {net}: in no pod pool")

    def rows(self) -> list[tuple[str, str, str]]:
        out = [("pod pool " + p.name, f"{p.source} (/{p.source_len} per node)", f"{p.twin} (/{p.twin_len} per node)")
               for p in self.pools]
        if self.service:
            out.append(("service CIDR", str(self.service[0]), str(self.service[1])))
        out += [("block", str(s), str(d)) for s, d in self.blocks]
        return out


def _block_of(net: IPv4Network) -> IPv4Network:
    return net if net.prefixlen <= MIN_BLOCK else net.supernet(new_prefix=MIN_BLOCK)


def _pack(sizes: list[int], space: IPv4Network, reserved: tuple[IPv4Network, ...] = ()) -> list[IPv4Network] | None:
    """Aligned blocks of the given prefix lengths, in order, from the start of ``space``; None if they don't fit."""
    out: list[IPv4Network] = []
    cursor = int(space.network_address)
    end = int(space.broadcast_address)
    for length in sizes:
        size = 1 << (32 - length)
        while True:
            cursor = (cursor + size - 1) // size * size
            if cursor + size - 1 > end:
                return None
            net = IPv4Network((cursor, length))
            clash = [r for r in reserved if net.overlaps(r)]
            if not clash:
                break
            cursor = int(clash[0].broadcast_address) + 1
        out.append(net)
        cursor += size
    return out


def _addresses(site: dict[str, Any], allocs: Allocations) -> list[IPv4Network]:
    """Every block the site uses outside its pod pools and service CIDR."""
    ap = site["address_plan"]
    nets = [IPv4Network(ap["fabric_pool"]), *(IPv4Network(a) for a in ap["anycast"]),
            IPv4Network(f"{ap['api_address']}/32")]
    for dc in site["dcs"]:
        nets += [IPv4Network(f"{s['router_id']}/32") for s in dc["spines"]]
        for u in dc.get("upstreams", []):
            nets += [IPv4Network(f"{u['router_id']}/32"), *(IPv4Network(a) for a in u.get("accept", []))]
        for rack in dc["racks"]:
            nets += [IPv4Network(rack["subnet"]), IPv4Network(f"{rack['tor']['router_id']}/32")]
            if rack["tor"].get("address"):
                nets.append(IPv4Network(f"{rack['tor']['address']}/32"))
            nets += [IPv4Network(f"{n['address']}/32") for n in rack.get("nodes", []) if n.get("address")]
    for role in ("control_plane", "etcd", "etcd_events"):
        nets += [IPv4Network(f"{vm['address']}/32") for vm in site["vms"].get(role, [])]
    nets += [IPv4Network(f"{a}/32") for a in allocs.node_addresses.values()]
    nets += list(allocs.fabric_links.values())
    blocks = sorted({_block_of(n) for n in nets}, key=lambda n: (int(n.network_address), n.prefixlen))
    return [b for b in blocks if not any(b != o and b.subnet_of(o) for o in blocks)]


def mapping(site: dict[str, Any], allocs: Allocations) -> Mapping:
    """The deterministic mapping of ``site`` (its site.yaml as plain data) and its allocations."""
    ap = site["address_plan"]
    pools = [(p["name"], IPv4Network(p["cidr"]), int(p.get("node_prefix_len", 24))) for p in ap["pod_pools"]]
    m = Mapping()
    for shift in range(0, MAX_NODE_PREFIX + 1):
        if any(n + shift > MAX_NODE_PREFIX for _, _, n in pools):
            break
        packed = _pack([net.prefixlen + shift for _, net, _ in pools], POD_SPACE)
        if packed is not None:
            m.shift = shift
            m.pools = [PoolMap(name, net, n, twin, n + shift)
                       for (name, net, n), twin in zip(pools, packed, strict=True)]
            break
    if not m.pools:
        raise TwinError(f"the pod pools ({', '.join(str(n) for _, n, _ in pools)}) do not fit into {POD_SPACE} "
                        f"with node prefixes of at most /{MAX_NODE_PREFIX}")
    service = IPv4Network(ap["service_cidr"])
    m.service = (service, IPv4Network((SERVICE_BASE, max(service.prefixlen, SERVICE_MAX))))
    blocks = _addresses(site, allocs)
    for b in blocks:
        for p in m.pools:
            if b.overlaps(p.source):
                raise TwinError(f"{b} overlaps pod pool {p.name} ({p.source}): cannot renumber it")
    packed = _pack([b.prefixlen for b in blocks], BLOCK_SPACE, RESERVED)
    if packed is None:
        raise TwinError(f"{len(blocks)} address blocks of the site do not fit into {BLOCK_SPACE} "
                        f"(without {', '.join(map(str, RESERVED))})")
    m.blocks = list(zip(blocks, packed, strict=True))
    max_pods = int(ap.get("max_pods", 110))
    fits = min((1 << (32 - p.twin_len)) - 3 for p in m.pools)
    m.max_pods = (max_pods, min(max_pods, fits))
    return m


def twin_site(site: dict[str, Any], m: Mapping, nodes_per_rack: int | None = None) -> dict[str, Any]:
    """site.yaml of the twin (plain data): every address renumbered, passwords dropped, the rest as it was.
    ``nodes_per_rack``: keep only the first N nodes of each rack (explicit nodes first, then the groups')."""
    out = copy.deepcopy(site)
    out["site"] = f"{site['site']}-twin"
    ap = out["address_plan"]
    for pool, pm in zip(ap["pod_pools"], m.pools, strict=True):
        pool["cidr"], pool["node_prefix_len"] = str(pm.twin), pm.twin_len
    ap["anycast"] = [str(m.network(a)) for a in ap["anycast"]]
    ap["api_address"] = str(m.address(ap["api_address"]))
    ap["service_cidr"] = str(m.network(ap["service_cidr"]))
    ap["fabric_pool"] = str(m.network(ap["fabric_pool"]))
    ap["max_pods"] = m.max_pods[1]
    if "password" in out.get("bgp", {}):
        del out["bgp"]["password"]
        if not out["bgp"]:
            del out["bgp"]
    for dc in out["dcs"]:
        _twin_dc(dc, m, nodes_per_rack)
    for role in ("control_plane", "etcd", "etcd_events"):
        for vm in out["vms"].get(role, []):
            vm["address"] = str(m.address(vm["address"]))
    return out


def _twin_dc(dc: dict[str, Any], m: Mapping, nodes_per_rack: int | None) -> None:
    for s in dc["spines"]:
        s["router_id"] = str(m.address(s["router_id"]))
    for u in dc.get("upstreams", []):
        u["router_id"] = str(m.address(u["router_id"]))
        if u.get("accept"):
            u["accept"] = [str(m.network(a)) for a in u["accept"]]
        u.pop("password", None)
    for rack in dc["racks"]:
        rack["subnet"] = str(m.network(rack["subnet"]))
        rack.pop("bgp_password", None)
        if nodes_per_rack is not None:
            _keep_first(rack, nodes_per_rack)
        tor = rack["tor"]
        tor["router_id"] = str(m.address(tor["router_id"]))
        if tor.get("address"):
            tor["address"] = str(m.address(tor["address"]))
        for n in rack.get("nodes", []):
            if n.get("address"):
                n["address"] = str(m.address(n["address"]))


def _keep_first(rack: dict[str, Any], k: int) -> None:
    rack["nodes"] = rack.get("nodes", [])[:k]
    left = k - len(rack["nodes"])
    groups = []
    for g in rack.get("node_groups", []):
        if left > 0:
            groups.append({**g, "count": min(g["count"], left)})
            left -= groups[-1]["count"]
    rack["node_groups"] = groups
    for key in ("nodes", "node_groups"):
        if not rack[key]:
            del rack[key]


def twin_allocations(allocs: Allocations, m: Mapping) -> Allocations:
    return Allocations(pod_cidrs={k: m.pod_prefix(v) for k, v in allocs.pod_cidrs.items()},
                       node_addresses={k: m.address(v) for k, v in allocs.node_addresses.items()},
                       fabric_links={k: m.network(v) for k, v in allocs.fabric_links.items()})


def differences(m: Mapping, nodes_per_rack: int | None = None) -> list[str]:
    """What the twin does not share with its source, in words."""
    out = [f"scaled: only the first {nodes_per_rack} nodes of each rack (the others' allocations stay reserved, "
           "so pools keep their headroom figures)"] if nodes_per_rack else []
    out += [f"every address: renumbered into {LAB_RANGE} (the table above); {MGMT_RANGE} is left to lab management"]
    if m.shift:
        out.append(f"pod prefixes are {m.shift} bits longer (/{m.pools[0].source_len} -> /{m.pools[0].twin_len}); "
                   "each pool keeps its number of node prefixes, each node its index")
    if m.max_pods[0] != m.max_pods[1]:
        out.append(f"max_pods {m.max_pods[0]} -> {m.max_pods[1]} (what a /{min(p.twin_len for p in m.pools)} holds)")
    if m.service and m.service[0].prefixlen != m.service[1].prefixlen:
        out.append(f"service CIDR {m.service[0]} -> {m.service[1]} (shorter: it is configuration, never routed)")
    out.append("site name gets '-twin'; BGP passwords (secret names) are dropped: the lab injects no secrets")
    return out


def shape(plan: Plan) -> dict[str, Any]:
    """What must be equal between a site and its twin: hosts, sessions with ASNs, ECMP widths, limits."""
    from ..limits import Limits, pool_headroom, worst

    return {
        "dcs": [d.name for d in plan.site.dcs],
        "racks": sorted((r.name, r.asn) for d in plan.site.dcs for r in d.racks),
        "nodes": sorted((n.hostname, n.rack, n.hardware.cores) for n in plan.nodes),
        "switches": sorted([(s.name, s.asn) for s in plan.spines] + [(t.name, t.asn) for t in plan.tors]),
        "vms": sorted((v.name, v.role, v.rack) for v in plan.vms),
        "upstreams": sorted((u.name, u.asn) for u in plan.upstreams),
        "sessions": sorted((s.kind, s.a.host, s.a.asn, s.b.host, s.b.asn, len(s.a_announces)) for s in plan.sessions),
        "ecmp": sorted((t.name, sum(c.kind == "node-tor" for c in t.clients)) for t in plan.tors),
        "anycast": len(plan.anycast),
        "bgp": plan.site.bgp.model_dump(exclude={"password"}),
        "limits": [(r["what"], r["value"], r["limit"]) for r in worst(plan, Limits())],
        "pools": [(p["pool"], p["size"], p["used"], p["free"]) for p in pool_headroom(plan, Limits())],
    }


def compare(source: Plan, twin: Plan) -> list[str]:
    """Every way the twin's shape differs from the source's (empty: a faithful twin)."""
    a, b = shape(source), shape(twin)
    return [f"{key}: {a[key]!r:.200} != {b[key]!r:.200}" for key in a if a[key] != b[key]]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_twin(source_dir: str | Path, out: str | Path,
               nodes_per_rack: int | None = None) -> tuple[Mapping, Path, list[str]]:
    """Write the twin of the site at ``source_dir`` into ``out`` (site.yaml, allocations.yaml). Returns the
    mapping, the twin's directory and the shape differences (empty unless something is wrong)."""
    from ..ipam import read_lock
    from ..load import load_site
    from ..pipeline import compile_site

    src_plan = compile_site(source_dir).plan
    site_obj, source, _doc = load_site(source_dir)
    if read_lock(source).pod_cidrs.keys() != {n.hostname for n in src_plan.nodes}:
        raise TwinError(f"{source.lock_file}: allocations are not complete; run `provisioner render {source_dir}` "
                        "first (the twin renumbers the lock, it never allocates)")
    raw = yaml.safe_load(Path(source.site_file).read_text())
    allocs = read_lock(source)
    m = mapping(raw, allocs)
    twin = twin_site(raw, m, nodes_per_rack)
    out = Path(out)
    site_file = out / "site.yaml"
    if site_file.exists() and not site_file.read_text().startswith(HEADER):
        raise TwinError(f"{site_file} exists and is not a twin written by this command; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    header = (f"{HEADER} {site_obj.site!r} ({Path(source.site_file)}), written by `provisioner lab twin`.\n"
              "# Do not edit: regenerate it. The mapping is in docs/lab.md (\"The scale twin\").\n")
    _atomic_write(site_file, header + yaml.safe_dump(twin, sort_keys=False, default_flow_style=None, width=120))
    _atomic_write(out / "allocations.yaml", dump_lock(twin["site"], twin_allocations(allocs, m)))
    twin_plan = compile_site(out).plan
    return m, out, compare(src_plan, twin_plan)
