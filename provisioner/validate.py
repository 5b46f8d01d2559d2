"""Cross-object rules of a site: names, addresses, references, overlaps. Every violation is collected.

Each rule yields a ``util.Violation``, ``(field path, message)``; ``load.py`` turns the path into ``file:line``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network

from .egress_rules import egress_problems
from .etcd_rules import etcd_problems
from .etcd_timing import timing_problems
from .model import HOSTNAME_RE, RACK_LABEL, ZONE_LABEL, Site, expanded_nodes
from .util import Loc, Violation, did_you_mean, dotted

# Ansible groups the inventory derives besides one per DC (see plan.inventory_groups).
RESERVED_GROUPS = frozenset({"all", "ungrouped", "nodes", "tors", "spines", "control_plane", "etcd", "etcd_events"})
# Ports an etcd member may not take: the well-known range (sshd 22, BGP 179...) and what the other
# daemons of a control-plane site listen on (BFD, kube-apiserver, kubelet, kube-proxy, controller, scheduler).
RESERVED_PORTS = {3784: "BFD", 3785: "BFD echo", 4784: "BFD multihop", 6443: "kube-apiserver",
                  10250: "kubelet", 10256: "kube-proxy", 10257: "kube-controller-manager",
                  10259: "kube-scheduler"}
# How a message refers to another object: load.py sets it to "rack dc2-r11 (line 171)"; a dotted path otherwise.
_DESCRIBE: contextvars.ContextVar[Callable[[Loc], str] | None] = contextvars.ContextVar("describe", default=None)
_LINE: contextvars.ContextVar[Callable[[Loc], int | None] | None] = contextvars.ContextVar("line", default=None)


def site_problems(site: Site, describe: Callable[[Loc], str] | None = None,
                  line_of: Callable[[Loc], int | None] | None = None) -> list[Violation]:
    """Every cross-object problem. ``describe``/``line_of`` let messages say "rack dc2-r11 (line 171)"."""
    problems: list[Violation] = []
    tokens = _DESCRIBE.set(describe), _LINE.set(line_of)
    try:
        for rule in (_names, _addresses, _references, _prefixes, _asns, _etcd_timing, etcd_problems,
                     _daemon_limits, egress_problems, _owned_labels):
            problems.extend(rule(site))
    finally:
        _DESCRIBE.reset(tokens[0])
        _LINE.reset(tokens[1])
    return problems


def _hosts(site: Site) -> Iterator[tuple[str, str, Loc]]:
    """(kind, name, loc) of everything that gets a hostname."""
    for d, dc in enumerate(site.dcs):
        for s, spine in enumerate(dc.spines):
            yield "spine", spine.name, ("dcs", d, "spines", s, "name")
        for u, up in enumerate(dc.upstreams):
            yield "upstream", up.name, ("dcs", d, "upstreams", u, "name")
        for r, rack in enumerate(dc.racks):
            rl: Loc = ("dcs", d, "racks", r)
            yield "tor", rack.tor.name, (*rl, "tor", "name")
            for node, nl in expanded_nodes(rack):
                yield "node", node.hostname, (*rl, *nl, "hostname") if nl[0] == "nodes" else (*rl, *nl)
    for role in ("control_plane", "etcd", "etcd_events"):
        for i, vm in enumerate(getattr(site.vms, role)):
            yield "vm", vm.name, ("vms", role, i, "name")


def _names(site: Site) -> Iterator[Violation]:
    seen: dict[str, Loc] = {}
    for kind, name, loc in _hosts(site):
        if not HOSTNAME_RE.fullmatch(name):
            yield loc, f"{kind} name {name!r} (from the name pattern) is not an RFC 1123 label"
        if name in seen:
            yield loc, f"duplicate name {name!r}: also used by {_fmt(seen[name])}"
        else:
            seen[name] = loc
        if name in RESERVED_GROUPS:
            yield loc, (f"{kind} name {name!r} is also the name of an Ansible group provisioner derives; "
                        "choose another name")
    for what, items in (("data centre", [(dc.name, ("dcs", d, "name")) for d, dc in enumerate(site.dcs)]),
                        ("rack", [(r.name, ("dcs", d, "racks", i, "name"))
                                  for d, dc in enumerate(site.dcs) for i, r in enumerate(dc.racks)]),
                        ("pod pool", [(p.name, ("address_plan", "pod_pools", i, "name"))
                                      for i, p in enumerate(site.address_plan.pod_pools)])):
        names: dict[str, Loc] = {}
        for name, loc in items:
            if name in names:
                yield loc, f"duplicate {what} name {name!r}: also used by {_fmt(names[name])}"
            names[name] = loc
    # Each DC is an Ansible group named after it ('-' becomes '_'): it must not merge with another group.
    for d, dc in enumerate(site.dcs):
        group = dc.name.replace("-", "_")
        if group in RESERVED_GROUPS or group.startswith(("rack_", "role_")):
            yield (("dcs", d, "name"),
                   f"data centre name {dc.name!r} would be the Ansible group {group!r}, which provisioner "
                   "already uses; choose another name")
        for host in {dc.name, group}:
            if host in seen:
                yield (("dcs", d, "name"),
                       f"data centre name {dc.name!r} is also a host name ({_fmt(seen[host])}): Ansible would "
                       f"have a group and a host called {host!r} and `--limit {host}` would be ambiguous; "
                       "rename one of them")


def _addresses(site: Site) -> Iterator[Violation]:
    """Every explicit address and router id is unique, and host addresses sit inside their subnet."""
    seen: dict[IPv4Address, Loc] = {}

    def claim(addr: IPv4Address, loc: Loc, what: str) -> Iterator[Violation]:
        if addr in seen:
            yield loc, f"{what} {addr} is already used by {_fmt(seen[addr])}"
        else:
            seen[addr] = loc

    yield from claim(site.address_plan.api_address, ("address_plan", "api_address"), "API address")
    for d, dc in enumerate(site.dcs):
        for s, spine in enumerate(dc.spines):
            yield from claim(spine.router_id, ("dcs", d, "spines", s, "router_id"), "router id")
        for u, up in enumerate(dc.upstreams):
            yield from claim(up.router_id, ("dcs", d, "upstreams", u, "router_id"), "router id")
        for r, rack in enumerate(dc.racks):
            rl: Loc = ("dcs", d, "racks", r)
            tor_addr = rack.tor_address()
            tor_loc: Loc = (*rl, "tor", "address") if rack.tor.address else (*rl, "subnet")
            yield from _inside(rack.subnet, tor_addr, tor_loc, "ToR address")
            yield from claim(tor_addr, tor_loc, "ToR address")
            if rack.tor.router_id != tor_addr:
                yield from claim(rack.tor.router_id, (*rl, "tor", "router_id"), "router id")
            for n, node in enumerate(rack.nodes):
                if node.address is not None:
                    loc = (*rl, "nodes", n, "address")
                    yield from _inside(rack.subnet, node.address, loc, "node address")
                    yield from claim(node.address, loc, "address")
    racks = {(dc.name, r.name): r for dc in site.dcs for r in dc.racks}
    for role in ("control_plane", "etcd", "etcd_events"):
        for i, vm in enumerate(getattr(site.vms, role)):
            loc = ("vms", role, i, "address")
            vm_rack = racks.get((vm.dc, vm.rack))
            if vm_rack is not None:
                yield from _inside(vm_rack.subnet, vm.address, loc, "VM address")
            yield from claim(vm.address, loc, "address")


def _inside(subnet: IPv4Network, addr: IPv4Address, loc: Loc, what: str) -> Iterator[Violation]:
    if addr not in subnet:
        yield loc, f"{what} {addr} is outside the rack subnet {subnet}"
    elif addr in (subnet.network_address, subnet.broadcast_address):
        yield loc, f"{what} {addr} is the network or broadcast address of {subnet}"


def _references(site: Site) -> Iterator[Violation]:
    dcs = {dc.name: {r.name for r in dc.racks} for dc in site.dcs}
    all_racks = {r: dc for dc, racks in dcs.items() for r in racks}
    profiles = sorted(site.hardware)

    def no_profile(name: str) -> str:
        hint = did_you_mean(name, profiles, listing=True)
        return f"hardware profile {name!r} is not defined under hardware{hint}"

    for d, dc in enumerate(site.dcs):
        for r, rack in enumerate(dc.racks):
            for node, nl in expanded_nodes(rack):
                if node.hardware not in site.hardware:
                    yield (("dcs", d, "racks", r, *nl, "hardware"), no_profile(node.hardware))
                    if nl[0] == "node_groups":
                        break
    for role in ("control_plane", "etcd", "etcd_events"):
        for i, vm in enumerate(getattr(site.vms, role)):
            if vm.dc not in dcs:
                hint = did_you_mean(vm.dc, dcs, listing=True)
                yield ("vms", role, i, "dc"), f"data centre {vm.dc!r} does not exist{hint}"
            elif vm.rack not in dcs[vm.dc]:
                where = (f"; it is in {all_racks[vm.rack]}" if vm.rack in all_racks
                         else did_you_mean(vm.rack, dcs[vm.dc], listing=True))
                yield ("vms", role, i, "rack"), f"rack {vm.rack!r} does not exist in {vm.dc}{where}"
            if vm.hardware is not None and vm.hardware not in site.hardware:
                yield ("vms", role, i, "hardware"), no_profile(vm.hardware)
    for p, pool in enumerate(site.address_plan.pod_pools):
        for j, dc_name in enumerate(pool.dcs):
            if dc_name not in dcs:
                yield (("address_plan", "pod_pools", p, "dcs", j),
                       f"data centre {dc_name!r} does not exist{did_you_mean(dc_name, dcs, listing=True)}")


def _prefixes(site: Site) -> Iterator[Violation]:
    """Pools, rack subnets, anycast, service CIDR and fabric pool never overlap one another."""
    plan = site.address_plan
    named: list[tuple[IPv4Network, Loc, str]] = []
    for p, pool in enumerate(plan.pod_pools):
        loc: Loc = ("address_plan", "pod_pools", p, "cidr")
        if pool.node_prefix_len < pool.cidr.prefixlen:
            yield (("address_plan", "pod_pools", p, "node_prefix_len"),
                   f"node prefix /{pool.node_prefix_len} is larger than the pool {pool.cidr}")
        named.append((pool.cidr, loc, f"pod pool {pool.name}"))
    for a, net in enumerate(plan.anycast):
        named.append((net, ("address_plan", "anycast", a), "anycast range"))
    named.append((plan.service_cidr, ("address_plan", "service_cidr"), "service CIDR"))
    named.append((plan.fabric_pool, ("address_plan", "fabric_pool"), "fabric pool"))
    for d, dc in enumerate(site.dcs):
        for r, rack in enumerate(dc.racks):
            named.append((rack.subnet, ("dcs", d, "racks", r, "subnet"), f"rack subnet of {rack.name}"))
    ordered = sorted(named, key=lambda item: (int(item[0].network_address), -item[0].prefixlen))
    # Sweep: a prefix overlaps an earlier one iff it starts before the furthest end seen so far.
    furthest: tuple[int, IPv4Network, Loc, str] | None = None
    for net, loc, what in ordered:
        if furthest is not None and int(net.network_address) <= furthest[0]:
            yield loc, f"{what} {net} overlaps {furthest[3]} {furthest[1]} ({_at(furthest[2])})"
        if furthest is None or int(net.broadcast_address) > furthest[0]:
            furthest = (int(net.broadcast_address), net, loc, what)
    api = plan.api_address
    for net, _loc, what in named:
        if api in net:
            yield ("address_plan", "api_address"), f"API address {api} lies inside {what} {net}"
    if plan.fabric_pool.prefixlen > 30:
        yield ("address_plan", "fabric_pool"), "fabric pool must hold at least two /31 links"


def _asns(site: Site) -> Iterator[Violation]:
    seen: dict[int, Loc] = {}
    for d, dc in enumerate(site.dcs):
        spine_asns = {s.asn for s in dc.spines}
        if len(spine_asns) > 1:
            yield ("dcs", d, "spines"), f"spines of {dc.name} must share one ASN (RFC 7938), got {sorted(spine_asns)}"
        for s, spine in enumerate(dc.spines):
            if spine.asn in seen and seen[spine.asn][:2] != ("dcs", d):
                yield ("dcs", d, "spines", s, "asn"), f"ASN {spine.asn} is already used by {_fmt(seen[spine.asn])}"
            seen.setdefault(spine.asn, ("dcs", d, "spines", s, "asn"))
    for d, dc in enumerate(site.dcs):
        for r, rack in enumerate(dc.racks):
            loc: Loc = ("dcs", d, "racks", r, "asn")
            if rack.asn in seen:
                yield loc, f"ASN {rack.asn} is also used by {_fmt(seen[rack.asn])}; one AS per rack"
            else:
                seen[rack.asn] = loc


def _owned_labels(site: Site) -> Iterator[Violation]:
    """provisioner writes a Node's zone and rack labels itself; a site label may repeat them, not contradict."""
    for d, dc in enumerate(site.dcs):
        for r, rack in enumerate(dc.racks):
            for node, nl in expanded_nodes(rack):
                for key, want in ((ZONE_LABEL, dc.name), (RACK_LABEL, rack.name)):
                    got = node.labels.get(key)
                    if got is not None and got != want:
                        yield (("dcs", d, "racks", r, *nl, "labels", key),
                               f"label {key}={got!r} contradicts {node.hostname}'s place ({want!r}); provisioner "
                               "sets this label from the site, so remove it or make it match")


def _etcd_timing(site: Site) -> Iterator[Violation]:
    yield from timing_problems(site.etcd)


def _daemon_limits(site: Site) -> Iterator[Violation]:
    """Values each valid alone that together would make a daemon refuse its config or fail to start."""
    bgp = site.bgp
    if bgp.keepalive * 3 > bgp.hold_time:
        yield (("bgp", "keepalive"),
               f"keepalive {bgp.keepalive}s must be at most a third of hold_time {bgp.hold_time}s "
               f"(at most {bgp.hold_time // 3}s): a session must survive two lost keepalives (RFC 4271)")
    etcd = site.etcd
    for client, peer, cluster in (("client_port", "peer_port", "etcd"),
                                  ("events_client_port", "events_peer_port", "events etcd")):
        ports = {client: getattr(etcd, client), peer: getattr(etcd, peer)}
        if ports[client] == ports[peer]:
            yield (("etcd", peer), f"{peer} {ports[peer]} is also {client}: the {cluster} members could not "
                                   "bind both on one host")
        for key, port in ports.items():
            if port < 1024:
                yield ("etcd", key), f"{key} {port} is a well-known port (below 1024; sshd is 22, BGP 179)"
            elif port in RESERVED_PORTS:
                yield ("etcd", key), f"{key} {port} is the port of {RESERVED_PORTS[port]}"
    max_pods = site.address_plan.max_pods
    for p, pool in enumerate(site.address_plan.pod_pools):
        usable = (1 << (32 - pool.node_prefix_len)) - 3  # network, broadcast and br0's gateway address
        if max_pods > usable:
            need = 32 - (max_pods + 3 - 1).bit_length()  # the longest prefix with max_pods + 3 addresses
            yield (("address_plan", "pod_pools", p, "node_prefix_len"),
                   f"a /{pool.node_prefix_len} per node gives {usable} pod addresses (network, broadcast and "
                   f"br0 take 3) but address_plan.max_pods is {max_pods}; use node_prefix_len {need} or less, "
                   "or lower max_pods")


def _at(loc: Loc) -> str:
    """``line 12`` when the file is known, else ``at address_plan.pod_pools[0].cidr``."""
    line_of = _LINE.get()
    line = line_of(loc) if line_of is not None else None
    return f"line {line}" if line else f"at {dotted(loc)}"


def _fmt(loc: Loc) -> str:
    describe = _DESCRIBE.get()
    return describe(loc) if describe is not None else dotted(loc)
