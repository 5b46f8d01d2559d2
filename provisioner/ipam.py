"""Stable address allocation and the ``allocations.yaml`` lock file.

Three things are allocated and locked: each node's pod prefix (first-fit over the pools, in site
order), the underlay address of nodes declared without one (lowest free host of the rack subnet),
and a /31 for every fabric link (ToR-spine, spine-spine, spine-upstream) from the fabric pool.

Rules: an existing allocation never moves; a node removed from site.yaml keeps its pod prefix and
address (it is *orphaned*) until ``provisioner release`` frees it, and nothing else may use them
meanwhile; fabric links of removed switches are freed on the next render since nothing outside the
fabric refers to them. Every key is independent of list order (a spine pair is named in name order).

A lock that lacks entries which the rendered tree or the site's git history still has (truncated,
emptied, replaced) would hand those objects new addresses: :func:`moves_against` finds them, and the
pipeline refuses them unless the command was given ``--allow-moves``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError, Problem, short
from .load import SiteSource, YamlDoc, parse_yaml, read_input
from .model import DataCentre, Node, PodPool, Rack, Site, expanded_nodes
from .util import Loc, dotted, gc_paused

LOCK_VERSION = 1
T = TypeVar("T")
SECTIONS = ("pod_cidrs", "node_addresses", "fabric_links")


@dataclass(frozen=True)
class Allocations:
    """The content of the lock file. Maps are keyed by hostname (or link id ``a~b``)."""

    pod_cidrs: dict[str, IPv4Network] = field(default_factory=dict)
    node_addresses: dict[str, IPv4Address] = field(default_factory=dict)
    fabric_links: dict[str, IPv4Network] = field(default_factory=dict)


@dataclass(frozen=True)
class Move:
    """A locked allocation that a run gives a new value (only ever with ``--allow-moves``)."""

    section: str  # pod_cidrs, node_addresses or fabric_links
    key: str
    old: str
    new: str
    source: str  # where the old value was read: the lock, the rendered tree or git

    def __str__(self) -> str:
        return f"{self.section}.{self.key}: {self.old} -> {self.new} (was in {self.source})"


@dataclass(frozen=True)
class AllocationChange:
    added_pods: tuple[str, ...] = ()
    added_addresses: tuple[str, ...] = ()
    added_links: tuple[str, ...] = ()
    freed_links: tuple[str, ...] = ()
    orphaned: tuple[str, ...] = ()  # in the lock, not in site.yaml: still reserved
    moves: tuple[Move, ...] = ()  # locked entries given a new value (with --allow-moves only)

    @property
    def lock_changes(self) -> bool:
        return bool(self.added_pods or self.added_addresses or self.added_links or self.freed_links or self.moves)


def link_id(a: str, b: str) -> str:
    return f"{a}~{b}"


def spine_link_id(a: str, b: str) -> str:
    """A spine-spine link is named in name order, so reordering ``dcs:`` renames (and moves) nothing."""
    return link_id(*sorted((a, b)))


# --- reading and writing the lock ------------------------------------------------------------


@gc_paused
def read_lock(source: SiteSource) -> Allocations:
    """Parse the lock file; a missing or empty file is an empty lock, a broken one an input error."""
    path = source.lock_file
    if not path.exists():
        return Allocations()
    text = read_input(path)
    if not text.strip():
        return Allocations()
    return parse_lock(text, str(path))


def parse_lock(text: str, file: str) -> Allocations:
    fast = _fast_lock_data(text)
    if fast is not None:
        try:
            return _lock_from_doc(YamlDoc(data=fast, lines={}, file=file))
        except InputError:
            pass  # report it through the YAML path below, with line numbers
    return _lock_from_doc(parse_yaml(text, file))


# The lock exactly as dump_lock writes it: read without YAML (10x faster at 10 000 nodes). Anything
# else (hand edits, quoting, duplicates, unknown keys, CRLF, empty sections...) returns None and goes
# through YAML.
_LOCK_TOP = re.compile(r"(pod_cidrs|node_addresses|fabric_links|version):(?: (\{\}|1))?")
_LOCK_ENTRY = re.compile(r'  (?:([a-z][a-z0-9~-]*)|"([A-Za-z0-9._~-]*)"): ([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?:/[0-9]+)?)')


def _fast_lock_data(text: str) -> dict[str, Any] | None:
    data: dict[str, Any] = {}
    section: dict[str, str] | None = None
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
        if m is None or m.group(1) in data or section == {}:
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
    if section == {}:  # a header with no entries is YAML null: let the strict path say so
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
            problems.append(doc.problem((key,), f"unknown key {short(key)}"))
    if data.get("version", LOCK_VERSION) != LOCK_VERSION or isinstance(data.get("version"), bool):
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


def _section(doc: YamlDoc, name: str, parse: Callable[[str], T], problems: list[Problem]) -> dict[str, T]:
    if name not in doc.data:
        problems.append(Problem(doc.file, None, name, f"section {name!r} is missing: the file looks truncated; "
                                f"restore it (e.g. from git); write `{name}: {{}}` only if it is really empty"))
        return {}
    raw = doc.data[name]
    if not isinstance(raw, dict):
        got = "nothing" if raw is None else f"{type(raw).__name__} {short(raw)}"
        problems.append(doc.problem((name,), f"must be a mapping of name: value (`{name}: {{}}` when empty), "
                                             f"got {got}; a wrong section would re-allocate every entry"))
        return {}
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            problems.append(doc.problem((name, key), f"expected 'name: address', got {short(key)}: {short(value)}"))
            continue
        try:
            out[key] = parse(value)
        except ValueError:
            problems.append(doc.problem((name, key), f"{short(value)} is not a valid address or prefix"))
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


class PodPoolSlots:
    """First-fit over the node-sized slots of one pod pool, as integers (fast at 10 000 nodes).

    The allocator's own pool state, public so that a what-if (capacity) replays exactly the allocator's
    pass: :func:`pod_pool_slots` seeds it from a lock, :meth:`take` hands out the lowest free prefix.
    """

    def __init__(self, pool: PodPool):
        self.pool = pool
        self._base = int(pool.cidr.network_address)
        self._step = 1 << (32 - pool.node_prefix_len)
        self._size = 1 << (pool.node_prefix_len - pool.cidr.prefixlen)
        self._used: set[int] = set()
        self._cursor = 0

    def serves(self, dc: str) -> bool:
        """Whether nodes of data centre ``dc`` may take a prefix from this pool (``dcs: []`` = any)."""
        return not self.pool.dcs or dc in self.pool.dcs

    def reserve(self, net: IPv4Network) -> bool:
        """Mark ``net`` used; False (nothing marked) if it is not one of this pool's node prefixes."""
        if net.prefixlen != self.pool.node_prefix_len:
            return False
        # net.subnet_of(pool) in integers: an aligned node prefix lies in the pool iff it starts in it.
        offset = int(net.network_address) - self._base
        if not 0 <= offset < self._size * self._step:
            return False
        self._used.add(offset // self._step)
        return True

    def take(self) -> IPv4Network | None:
        """The lowest free node prefix (now used), or None when the pool is full."""
        while self._cursor < self._size and self._cursor in self._used:
            self._cursor += 1
        if self._cursor >= self._size:
            return None
        self._used.add(self._cursor)
        return IPv4Network((self._base + self._cursor * self._step, self.pool.node_prefix_len))

    @property
    def free(self) -> int:
        return self._size - len(self._used)


def pod_pool_slots(site: Site, pod_cidrs: Mapping[str, IPv4Network]) -> tuple[list[PodPoolSlots], list[str]]:
    """The slots of every pod pool of ``site`` (in site order) with the locked ``pod_cidrs`` reserved,
    and the owners whose prefix lies in no pool (or has another length than the pool's node prefix)."""
    pools = [PodPoolSlots(p) for p in site.address_plan.pod_pools]
    outside = [owner for owner, net in pod_cidrs.items() if not any(state.reserve(net) for state in pools)]
    return pools, outside


class _Where:
    """File:line of the site objects and lock entries an allocation error is about."""

    def __init__(self, doc: YamlDoc | None, lock_file: str):
        self.doc = doc
        self.lock_file = lock_file
        self._lock_lines: dict[tuple[str, str], int] | None = None

    def site(self, loc: Loc, message: str, bare_field: str | None = None) -> Problem:
        """A problem at the site object ``loc``; without the parsed file (what-ifs in memory) its field
        is ``bare_field`` when given: capacity.py tells pool and rack exhaustion apart by it."""
        if self.doc is None:
            return Problem("", None, bare_field or dotted(loc), message)
        return self.doc.problem(loc, message)

    def describe(self, loc: Loc) -> str:
        return self.doc.describe(loc) if self.doc is not None else dotted(loc)

    def lock_line(self, section: str, key: str) -> int | None:
        if self._lock_lines is None:
            self._lock_lines = {}
            try:
                text = Path(self.lock_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
            current = ""
            for number, line in enumerate(text.split("\n"), 1):
                if line[:1] not in ("", " ", "#"):
                    current = line.split(":", 1)[0]
                elif line.startswith("  ") and ":" in line:
                    self._lock_lines[(current, line.split(":", 1)[0].strip().strip('"'))] = number
        return self._lock_lines.get((section, key))

    def lock_ref(self, section: str, key: str) -> str:
        line = self.lock_line(section, key)
        return f"{self.lock_file}:{line}" if line else self.lock_file

    def lock(self, section: str, key: str, message: str) -> Problem:
        return Problem(self.lock_file, self.lock_line(section, key), f"{section}.{key}", message)


@gc_paused
def allocate(
    site: Site, lock: Allocations, lock_file: str = "allocations.yaml", doc: YamlDoc | None = None,
    allow_moves: bool = False,
) -> tuple[Allocations, AllocationChange]:
    """Extend ``lock`` to cover every node and link of ``site``; never move what is there.

    ``doc`` (the parsed site.yaml) gives errors the file:line of the object that caused them. A locked
    entry that can no longer stand (a node moved to another rack) is an error unless ``allow_moves``;
    then it is re-allocated and reported in ``change.moves``.
    """
    run = _Run(site, lock, _Where(doc, lock_file), allow_moves)
    pod_cidrs, added_pods = run.pods()
    node_addresses, added_addresses = run.addresses()
    fabric_links, added_links, freed = run.links()
    if run.problems:
        raise InputError(run.problems)
    orphaned = tuple(sorted(set(pod_cidrs) - run.live_names))
    return (
        Allocations(pod_cidrs=pod_cidrs, node_addresses=node_addresses, fabric_links=fabric_links),
        AllocationChange(added_pods=tuple(added_pods), added_addresses=tuple(added_addresses),
                         added_links=tuple(added_links), freed_links=freed, orphaned=orphaned,
                         moves=tuple(run.moves)),
    )


class _Run:
    """One allocation: its three phases (pod prefixes, node addresses, fabric /31s) share the site, the
    lock, where errors point and what has gone wrong so far; each phase adds its problems and moves."""

    def __init__(self, site: Site, lock: Allocations, where: _Where, allow_moves: bool):
        self.site = site
        self.lock = lock
        self.where = where
        self.allow_moves = allow_moves
        self.problems: list[Problem] = []
        self.moves: list[Move] = []
        self.live_nodes: list[tuple[Loc, DataCentre, Rack, Node]] = [
            (("dcs", d, "racks", r, *nl), dc, rack, node)
            for d, dc in enumerate(site.dcs) for r, rack in enumerate(dc.racks)
            for node, nl in expanded_nodes(rack)]
        self.live_names = {node.hostname for _, _, _, node in self.live_nodes}
        self._claimed: dict[IPv4Address, Loc] | None = None

    def claimed(self) -> dict[IPv4Address, Loc]:
        if self._claimed is None:
            self._claimed = claimed_addresses(self.site)
        return self._claimed

    def pods(self) -> tuple[dict[str, IPv4Network], list[str]]:
        """First-fit pod prefixes for nodes without one, in site order, from the pools that serve the DC."""
        lock, where = self.lock, self.where
        pools, outside = pod_pool_slots(self.site, lock.pod_cidrs)
        pod_cidrs = dict(lock.pod_cidrs)
        for owner in outside:
            net = lock.pod_cidrs[owner]
            if owner in self.live_names and self.allow_moves:
                del pod_cidrs[owner]  # re-allocated below, reported as a move
            elif owner in self.live_names or any(net.overlaps(state.pool.cidr) for state in pools):
                # Outside every pool, an orphan's prefix harms nothing; inside one with the wrong length,
                # first-fit would hand out addresses on top of it.
                self.problems.append(where.lock("pod_cidrs", owner,
                                                f"{net} lies in no pod pool (or does not match its node prefix "
                                                "length); restore the pool, release the node if it is gone, or "
                                                "re-run with --allow-moves to give it a new prefix"))
        added: list[str] = []
        missing: dict[str, int] = {}
        first_missing: Loc | None = None
        for loc, dc, _rack, node in self.live_nodes:
            if node.hostname in pod_cidrs:
                continue
            for state in pools:
                taken = state.take() if state.serves(dc.name) else None
                if taken is not None:
                    pod_cidrs[node.hostname] = taken
                    added.append(node.hostname)
                    break
            else:
                missing[dc.name] = missing.get(dc.name, 0) + 1
                first_missing = first_missing or loc[:4]
        if missing:
            total = sum(missing.values())
            per_dc = ", ".join(f"{dc}: {n}" for dc, n in sorted(missing.items()))
            pools_loc: Loc = (("address_plan", "pod_pools", 0) if len(pools) == 1
                              else ("address_plan", "pod_pools"))
            first = f"; the first without one is in {where.describe(first_missing)}" if first_missing else ""
            self.problems.append(where.site(pools_loc, f"pod pools exhausted: {total} more node prefixes are "
                                                       f"needed ({per_dc}){first}; add a pool or release "
                                                       "orphaned nodes", "address_plan.pod_pools"))
        for owner in added:
            if owner in lock.pod_cidrs:
                self.moves.append(Move("pod_cidrs", owner, str(lock.pod_cidrs[owner]), str(pod_cidrs[owner]),
                                       where.lock_file))
        return pod_cidrs, added

    def addresses(self) -> tuple[dict[str, IPv4Address], list[str]]:
        """Underlay addresses of nodes declared without one: the lowest free host of the rack subnet."""
        where = self.where
        node_addresses = dict(self.lock.node_addresses)
        taken_by_rack = taken_addresses(self.site)
        locked_addresses = set(node_addresses.values())
        added: list[str] = []
        for loc, _dc, rack, node in self.live_nodes:
            if node.address is not None:
                node_addresses.pop(node.hostname, None)  # explicit wins; the lock keeps no copy
                continue
            locked = node_addresses.get(node.hostname)
            taken = taken_by_rack[rack.name]
            if locked is not None and locked in rack.subnet:
                if locked in taken:  # a locked address never moves silently: the SRE decides
                    self.problems.append(where.site(self.claimed().get(locked, loc), (
                        f"{locked} is locked to {node.hostname} "
                        f"({where.lock_ref('node_addresses', node.hostname)}) but site.yaml now also uses it "
                        f"here; pick another address here, or give {node.hostname} an explicit address")))
                taken.add(locked)
                continue
            if locked is not None and not self.allow_moves:
                self.problems.append(where.site(loc, (
                    f"{node.hostname} is locked to {locked} ({where.lock_ref('node_addresses', node.hostname)}), "
                    f"outside its rack subnet {rack.subnet}: it would get a new address; run with --allow-moves "
                    "if that is intended")))
                continue
            for addr in rack.subnet.hosts():
                if addr not in taken and addr not in locked_addresses:
                    node_addresses[node.hostname] = addr
                    taken.add(addr)
                    locked_addresses.add(addr)
                    added.append(node.hostname)
                    if locked is not None:
                        self.moves.append(Move("node_addresses", node.hostname, str(locked), str(addr),
                                               where.lock_file))
                    break
            else:
                self.problems.append(where.site(loc, f"rack subnet {rack.subnet} has no free address left for "
                                                     f"{node.hostname}", f"racks.{rack.name}.subnet"))
        # A removed node's address stays reserved until released: nothing in site.yaml may take it.
        for owner, addr in self.lock.node_addresses.items():
            if owner not in self.live_names and addr in self.claimed():
                self.problems.append(where.site(self.claimed()[addr], (
                    f"{addr} is reserved for the removed node {owner} "
                    f"({where.lock_ref('node_addresses', owner)}) until `provisioner release {self.site.site} "
                    f"{owner}` frees it; use another address")))
        return node_addresses, added

    def links(self) -> tuple[dict[str, IPv4Network], list[str], tuple[str, ...]]:
        """A /31 from the fabric pool for every fabric link without one; links no longer wanted are freed."""
        lock, where, pool = self.lock, self.where, self.site.address_plan.fabric_pool
        wanted = list(fabric_link_ids(self.site))
        wanted_set = set(wanted)
        fabric_links: dict[str, IPv4Network] = {}
        for lid, net in lock.fabric_links.items():
            if lid in wanted_set:
                fabric_links[lid] = net
            else:
                a, _, b = lid.partition("~")
                if link_id(b, a) in wanted_set and link_id(b, a) not in lock.fabric_links:
                    fabric_links[link_id(b, a)] = net  # written before link ids were order-independent
        relocated: dict[str, IPv4Network] = {}
        for lid, net in list(fabric_links.items()):
            if not net.subnet_of(pool):
                if self.allow_moves:
                    relocated[lid] = fabric_links.pop(lid)  # re-allocated below, reported as a move
                    continue
                self.problems.append(where.lock("fabric_links", lid,
                                                f"{net} is outside the fabric pool {pool}; restore the pool, or "
                                                "re-run with --allow-moves to give the link a new /31"))
        renamed = {lid for lid in fabric_links if lid not in lock.fabric_links}
        freed = tuple(sorted(lid for lid in set(lock.fabric_links) - wanted_set
                             if spine_link_id(*lid.split("~", 1)) not in renamed))
        used = {int(n.network_address) for n in fabric_links.values()}
        end = int(pool.broadcast_address)
        cursor = int(pool.network_address)
        added: list[str] = []
        for lid in wanted:
            if lid in fabric_links:
                continue
            while cursor in used:
                cursor += 2
            if cursor + 1 > end:
                self.problems.append(where.site(("address_plan", "fabric_pool"),
                                                f"fabric pool {pool} is exhausted ({len(wanted)} /31 links needed)"))
                break
            fabric_links[lid] = IPv4Network((cursor, 31))
            used.add(cursor)
            added.append(lid)
            if lid in relocated:
                self.moves.append(Move("fabric_links", lid, str(relocated[lid]), str(fabric_links[lid]),
                                       where.lock_file))
        return fabric_links, added, freed


def moves_against(evidence: Allocations, lock: Allocations, new: Allocations, source: str) -> list[Move]:
    """Entries ``evidence`` (the rendered tree's or git's copy of the lock) has, ``lock`` lacks, and
    ``new`` gives another value: what a truncated or replaced lock would silently move."""
    out: list[Move] = []
    for section in SECTIONS:
        old_map, locked, now = getattr(evidence, section), getattr(lock, section), getattr(new, section)
        for key, old in old_map.items():
            if key not in locked and key in now and now[key] != old:
                out.append(Move(section, key, str(old), str(now[key]), source))
    return out


def fabric_link_ids(site: Site) -> Iterable[str]:
    """ToR-spine links within each DC, then a full mesh between spines of different DCs (named in name
    order: the ids do not depend on the order of ``dcs:``), then each spine to each upstream router of its DC."""
    for dc in site.dcs:
        for rack in dc.racks:
            for spine in dc.spines:
                yield link_id(spine.name, rack.tor.name)
    spines = [(d, s) for d, dc in enumerate(site.dcs) for s in dc.spines]
    for i, (da, a) in enumerate(spines):
        for db, b in spines[i + 1:]:
            if da != db:
                yield spine_link_id(a.name, b.name)
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


def claimed_addresses(site: Site) -> dict[IPv4Address, Loc]:
    """Every address site.yaml itself gives to something, with where (for error messages)."""
    out: dict[IPv4Address, Loc] = {site.address_plan.api_address: ("address_plan", "api_address")}
    for d, dc in enumerate(site.dcs):
        for s, spine in enumerate(dc.spines):
            out.setdefault(spine.router_id, ("dcs", d, "spines", s, "router_id"))
        for r, rack in enumerate(dc.racks):
            rl: Loc = ("dcs", d, "racks", r)
            out.setdefault(rack.tor_address(), (*rl, "tor", "address") if rack.tor.address else (*rl, "tor"))
            out.setdefault(rack.tor.router_id, (*rl, "tor", "router_id"))
            for n, node in enumerate(rack.nodes):
                if node.address is not None:
                    out.setdefault(node.address, (*rl, "nodes", n, "address"))
    for role in ("control_plane", "etcd", "etcd_events"):
        for i, vm in enumerate(getattr(site.vms, role)):
            out.setdefault(vm.address, ("vms", role, i, "address"))
    return out


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
