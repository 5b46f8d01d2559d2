"""Stable address allocation and the ``allocations.yaml`` lock file.

Three things are allocated and locked: each node's pod prefix (first-fit over the pools, in site
order), the underlay address of nodes declared without one (lowest free host of the rack subnet),
and a /31 for every fabric link (ToR-spine, spine-spine, spine-upstream) from the fabric pool.

Rules: an existing allocation never moves; a node removed from site.yaml keeps its pod prefix and
address (it is *orphaned*) until ``provisioner release`` frees it; fabric links of removed switches
are freed on the next render since nothing outside the fabric refers to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from .errors import InputError, Problem
from .load import SiteSource, YamlDoc, expanded_nodes, gc_paused, parse_yaml, read_input
from .model import PodPool, Site

LOCK_VERSION = 1
SECTIONS = ("pod_cidrs", "node_addresses", "fabric_links")


@dataclass(frozen=True)
class Allocations:
    """The content of the lock file. Maps are keyed by hostname (or link id ``a~b``)."""

    pod_cidrs: dict[str, IPv4Network] = field(default_factory=dict)
    node_addresses: dict[str, IPv4Address] = field(default_factory=dict)
    fabric_links: dict[str, IPv4Network] = field(default_factory=dict)


@dataclass(frozen=True)
class AllocationChange:
    added_pods: tuple[str, ...] = ()
    added_addresses: tuple[str, ...] = ()
    added_links: tuple[str, ...] = ()
    freed_links: tuple[str, ...] = ()
    orphaned: tuple[str, ...] = ()  # in the lock, not in site.yaml: still reserved

    @property
    def lock_changes(self) -> bool:
        return bool(self.added_pods or self.added_addresses or self.added_links or self.freed_links)


def link_id(a: str, b: str) -> str:
    return f"{a}~{b}"


# --- reading and writing the lock ------------------------------------------------------------


@gc_paused
def read_lock(source: SiteSource) -> Allocations:
    """Parse the lock file; a missing file is an empty lock, a broken one an input error."""
    path = source.lock_file
    if not path.exists():
        return Allocations()
    text = read_input(path)
    if not text.strip():
        return Allocations()
    fast = _fast_lock_data(text)
    if fast is not None:
        try:
            return _lock_from_doc(YamlDoc(data=fast, lines={}, file=str(path)))
        except InputError:
            pass  # report it through the YAML path below, with line numbers
    return _lock_from_doc(parse_yaml(text, str(path)))


# The lock exactly as dump_lock writes it: read without YAML (10x faster at 10 000 nodes). Anything
# else (hand edits, quoting, duplicates, unknown keys, CRLF...) returns None and goes through YAML.
_LOCK_TOP = re.compile(r"(pod_cidrs|node_addresses|fabric_links|version):(?: (\{\}|1))?")
_LOCK_ENTRY = re.compile(r'  (?:([a-z][a-z0-9~-]*)|"([A-Za-z0-9._~-]*)"): ([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?:/[0-9]+)?)')


def _fast_lock_data(text: str) -> dict | None:
    data: dict = {}
    section: dict | None = None
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        m = _LOCK_ENTRY.fullmatch(line)
        if m is not None:
            key = m.group(1)
            if key is None:
                key = m.group(2)
            elif key in _YAML_SPECIAL:
                return None
            if section is None or key in section:
                return None
            section[key] = m.group(3)
            continue
        m = _LOCK_TOP.fullmatch(line)
        if m is None or m.group(1) in data:
            return None
        name, value = m.groups()
        section = None
        if name == "version":
            if value != "1":
                return None
            data[name] = 1
        elif value == "{}":
            data[name] = {}
        elif value is None:
            data[name] = section = {}
        else:
            return None
    return data


def _lock_from_doc(doc: YamlDoc) -> Allocations:
    path = doc.file
    data = doc.data
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise InputError([Problem(str(path), 1, "", "the lock file must be a mapping")])
    for key in data:
        if key not in (*SECTIONS, "version"):
            problems.append(doc.problem((key,), f"unknown key {key!r}"))
    if data.get("version", LOCK_VERSION) != LOCK_VERSION:
        problems.append(doc.problem(("version",), f"unsupported lock version (expected {LOCK_VERSION})"))
    pods = _section(doc, "pod_cidrs", _network, problems)
    addrs = _section(doc, "node_addresses", _address, problems)
    links = _section(doc, "fabric_links", _network, problems)
    for name, seen in (("pod_cidrs", pods), ("fabric_links", links)):
        # Sweep in address order: an entry overlaps an earlier one iff it starts before the furthest end.
        furthest: tuple[int, str, IPv4Network] | None = None
        for owner, net in sorted(seen.items(), key=lambda kv: (int(kv[1].network_address), -kv[1].prefixlen)):
            if furthest is not None and int(net.network_address) <= furthest[0]:
                what = "is also allocated to" if net == furthest[2] else f"overlaps {furthest[2]} of"
                problems.append(doc.problem((name, owner), f"{net} {what} {furthest[1]}"))
            if furthest is None or int(net.broadcast_address) > furthest[0]:
                furthest = (int(net.broadcast_address), owner, net)
    for owner, net in links.items():
        if net.prefixlen != 31:
            problems.append(doc.problem(("fabric_links", owner), f"{net} is not a /31 point-to-point link"))
    owners_a: dict[IPv4Address, str] = {}
    for owner, addr in addrs.items():
        if addr in owners_a:
            problems.append(doc.problem(("node_addresses", owner), f"{addr} is also allocated to {owners_a[addr]}"))
        owners_a[addr] = owner
    if problems:
        raise InputError(problems)
    return Allocations(pod_cidrs=pods, node_addresses=addrs, fabric_links=links)


def _network(value: str) -> IPv4Network:
    return IPv4Network(value, strict=True)


def _address(value: str) -> IPv4Address:
    return IPv4Address(value)


def _section(doc: YamlDoc, name: str, parse, problems: list[Problem]) -> dict:
    raw = doc.data.get(name) or {}
    if not isinstance(raw, dict):
        problems.append(doc.problem((name,), "must be a mapping of name: value"))
        return {}
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(doc.problem((name, key), f"expected 'name: address', got {key!r}: {value!r}"))
            continue
        try:
            out[key] = parse(value)
        except ValueError:
            problems.append(doc.problem((name, key), f"{value!r} is not a valid address or prefix"))
    return out


_PLAIN_SAFE = re.compile(r"^[a-z][a-z0-9~-]*$")
_YAML_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key(name: str) -> str:
    """Quote keys that YAML would read as something other than a string (``on``, ``123``...)."""
    if _PLAIN_SAFE.fullmatch(name) and name not in _YAML_SPECIAL:
        return name
    return f'"{name}"'


def dump_lock(site_name: str, allocs: Allocations) -> str:
    out = [
        f"# Allocation lock of site {site_name!r}: written by provisioner, reviewed in pull requests.",
        "# Entries never move. A node removed from site.yaml keeps its entries until",
        "# `provisioner release` frees them.",
        f"version: {LOCK_VERSION}",
    ]
    for name, mapping in (("pod_cidrs", allocs.pod_cidrs), ("node_addresses", allocs.node_addresses),
                          ("fabric_links", allocs.fabric_links)):
        if not mapping:
            out.append(f"{name}: {{}}")
            continue
        out.append(f"{name}:")
        out.extend(f"  {_key(k)}: {mapping[k]}" for k in sorted(mapping))
    return "\n".join(out) + "\n"


# --- allocation ------------------------------------------------------------------------------


class _PoolState:
    """First-fit over the node-sized slots of one pool, as integers (fast at 10 000 nodes)."""

    def __init__(self, pool: PodPool):
        self.pool = pool
        self.base = int(pool.cidr.network_address)
        self.step = 1 << (32 - pool.node_prefix_len)
        self.size = 1 << (pool.node_prefix_len - pool.cidr.prefixlen)
        self.used: set[int] = set()
        self.cursor = 0

    def slot_of(self, net: IPv4Network) -> int | None:
        if net.prefixlen != self.pool.node_prefix_len:
            return None
        # net.subnet_of(pool) in integers: an aligned node prefix lies in the pool iff it starts in it.
        offset = int(net.network_address) - self.base
        if not 0 <= offset < self.size * self.step:
            return None
        return offset // self.step

    def take(self) -> IPv4Network | None:
        while self.cursor < self.size and self.cursor in self.used:
            self.cursor += 1
        if self.cursor >= self.size:
            return None
        self.used.add(self.cursor)
        return IPv4Network((self.base + self.cursor * self.step, self.pool.node_prefix_len))

    @property
    def free(self) -> int:
        return self.size - len(self.used)


@gc_paused
def allocate(
    site: Site, lock: Allocations, lock_file: str = "allocations.yaml"
) -> tuple[Allocations, AllocationChange]:
    """Extend ``lock`` to cover every node and link of ``site``; never move what is there."""
    problems: list[Problem] = []
    racks = [(dc, rack) for dc in site.dcs for rack in dc.racks]
    live_nodes = [(dc, rack, node) for dc, rack in racks for node, _ in expanded_nodes(rack)]
    live_names = {node.hostname for _, _, node in live_nodes}

    # Pod prefixes.
    pools = [_PoolState(p) for p in site.address_plan.pod_pools]
    pod_cidrs = dict(lock.pod_cidrs)
    for owner, net in pod_cidrs.items():
        for state in pools:
            slot = state.slot_of(net)
            if slot is not None:
                state.used.add(slot)
                break
        else:
            if owner in live_names or any(net.overlaps(state.pool.cidr) for state in pools):
                # Outside every pool, an orphan's prefix harms nothing; inside one with the wrong length,
                # first-fit would hand out addresses on top of it.
                problems.append(Problem(lock_file, None, f"pod_cidrs.{owner}",
                                        f"{net} lies in no pod pool (or does not match its node prefix length); "
                                        "restore the pool or release the node"))
    added_pods: list[str] = []
    missing: dict[str, int] = {}
    for dc, _rack, node in live_nodes:
        if node.hostname in pod_cidrs:
            continue
        for state in pools:
            if state.pool.dcs and dc.name not in state.pool.dcs:
                continue
            net = state.take()
            if net is not None:
                pod_cidrs[node.hostname] = net
                added_pods.append(node.hostname)
                break
        else:
            missing[dc.name] = missing.get(dc.name, 0) + 1
    if missing:
        total = sum(missing.values())
        per_dc = ", ".join(f"{dc}: {n}" for dc, n in sorted(missing.items()))
        problems.append(Problem("", None, "address_plan.pod_pools",
                                f"pod pools exhausted: {total} more node prefixes are needed ({per_dc}); "
                                "add a pool or release orphaned nodes"))

    # Underlay addresses of nodes declared without one.
    node_addresses = dict(lock.node_addresses)
    taken_by_rack = taken_addresses(site)
    locked_addresses = set(node_addresses.values())
    added_addresses: list[str] = []
    for _dc, rack, node in live_nodes:
        if node.address is not None:
            node_addresses.pop(node.hostname, None)  # explicit wins; the lock keeps no copy
            continue
        locked = node_addresses.get(node.hostname)
        taken = taken_by_rack[rack.name]
        if locked is not None and locked in rack.subnet:
            if locked in taken:  # a locked address never moves silently: the SRE decides
                problems.append(Problem(lock_file, None, f"node_addresses.{node.hostname}",
                                        f"{locked} is locked to {node.hostname} but site.yaml now also uses it "
                                        "(ToR, router id, VM or explicit node address); pick another address "
                                        "there, or give the node an explicit address"))
            taken.add(locked)
            continue
        for addr in rack.subnet.hosts():
            if addr not in taken and addr not in locked_addresses:
                node_addresses[node.hostname] = addr
                taken.add(addr)
                locked_addresses.add(addr)
                added_addresses.append(node.hostname)
                break
        else:
            problems.append(Problem("", None, f"racks.{rack.name}.subnet",
                                    f"rack subnet {rack.subnet} has no free address left for {node.hostname}"))

    # Fabric /31s.
    wanted = list(fabric_link_ids(site))
    wanted_set = set(wanted)
    fabric_links = {k: v for k, v in lock.fabric_links.items() if k in wanted_set}
    for lid, net in fabric_links.items():
        if not net.subnet_of(site.address_plan.fabric_pool):
            problems.append(Problem(lock_file, None, f"fabric_links.{lid}",
                                    f"{net} is outside the fabric pool {site.address_plan.fabric_pool}; "
                                    "delete the entry to have the link re-allocated"))
    freed = tuple(sorted(set(lock.fabric_links) - wanted_set))
    used = {int(n.network_address) for n in fabric_links.values()}
    base = int(site.address_plan.fabric_pool.network_address)
    end = int(site.address_plan.fabric_pool.broadcast_address)
    cursor = base
    added_links: list[str] = []
    for lid in wanted:
        if lid in fabric_links:
            continue
        while cursor in used:
            cursor += 2
        if cursor + 1 > end:
            problems.append(Problem("", None, "address_plan.fabric_pool",
                                    f"fabric pool {site.address_plan.fabric_pool} is exhausted "
                                    f"({len(wanted)} /31 links needed)"))
            break
        fabric_links[lid] = IPv4Network((cursor, 31))
        used.add(cursor)
        added_links.append(lid)

    if problems:
        raise InputError(problems)
    orphaned = tuple(sorted(set(pod_cidrs) - live_names))
    return (
        Allocations(pod_cidrs=pod_cidrs, node_addresses=node_addresses, fabric_links=fabric_links),
        AllocationChange(added_pods=tuple(added_pods), added_addresses=tuple(added_addresses),
                         added_links=tuple(added_links), freed_links=freed, orphaned=orphaned),
    )


def fabric_link_ids(site: Site) -> Iterable[str]:
    """ToR-spine links within each DC, then a full mesh between spines of different DCs, then each spine to
    each upstream router of its DC."""
    for dc in site.dcs:
        for rack in dc.racks:
            for spine in dc.spines:
                yield link_id(spine.name, rack.tor.name)
    spines = [(d, s) for d, dc in enumerate(site.dcs) for s in dc.spines]
    for i, (da, a) in enumerate(spines):
        for db, b in spines[i + 1:]:
            if da != db:
                yield link_id(a.name, b.name)
    for dc in site.dcs:
        for spine in dc.spines:
            for upstream in dc.upstreams:
                yield link_id(spine.name, upstream.name)


def taken_addresses(site: Site) -> dict[str, set[IPv4Address]]:
    """Per rack: addresses a node may not be given (ToR, explicit nodes, VMs, any router id, the API)."""
    reserved = {site.address_plan.api_address}
    for dc in site.dcs:
        reserved.update(s.router_id for s in dc.spines)
        reserved.update(r.tor.router_id for r in dc.racks)
    taken: dict[str, set[IPv4Address]] = {}
    for dc in site.dcs:
        for rack in dc.racks:
            s = {rack.tor_address(), *(a for a in reserved if a in rack.subnet)}
            s.update(n.address for n in rack.nodes if n.address is not None)
            taken[rack.name] = s
    for role in ("control_plane", "etcd", "etcd_events"):
        for vm in getattr(site.vms, role):
            if vm.rack in taken:
                taken[vm.rack].add(vm.address)
    return taken


def release(site: Site, lock: Allocations, hostname: str) -> Allocations:
    """Free an orphaned node's pod prefix and address. A node still in site.yaml cannot be released."""
    live = {n.hostname for dc in site.dcs for r in dc.racks for n, _ in expanded_nodes(r)}
    if hostname in live:
        raise InputError(f"{hostname} is still in site.yaml; remove it there first, then release it")
    if hostname not in lock.pod_cidrs and hostname not in lock.node_addresses:
        orphans = sorted(set(lock.pod_cidrs) - live)
        hint = f" (orphaned nodes: {', '.join(orphans)})" if orphans else " (no orphaned nodes)"
        raise InputError(f"{hostname} has no allocation in the lock file{hint}")
    pods = {k: v for k, v in lock.pod_cidrs.items() if k != hostname}
    addrs = {k: v for k, v in lock.node_addresses.items() if k != hostname}
    return Allocations(pod_cidrs=pods, node_addresses=addrs, fabric_links=dict(lock.fabric_links))
