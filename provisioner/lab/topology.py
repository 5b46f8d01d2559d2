"""Plan -> lab topology: namespaces, links, addresses and daemons of every lab host. Pure data, no side effects.

One lab host per spine, ToR, node and VM. Interface names inside a host are short and fixed by role
(``eth0`` uplink of a server, ``swpN`` ToR server ports on the rack bridge ``br-rack``, ``upN`` ToR
uplinks, ``downN``/``peerN`` spine links, ``mgmt0`` management), so they never collide and stay within
the kernel's 15 characters. The only interfaces in the root namespace are the management bridge
``<prefix>-mgmt`` and one veth end per host, ``<prefix>m<N>``.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from ..plan import Plan

DEFAULT_PREFIX = "plab"
PREFIX_ENV = "PROVISIONER_LAB_PREFIX"
LAB_RANGE = IPv4Network("198.18.0.0/15")
MGMT_RANGE = IPv4Network("198.19.240.0/20")
# "The outside" of the data-plane checks: an address every lab upstream holds on lo and none announces, so a
# packet reaches it only by following default routes out of the site (and is answered by whichever upstream
# it left through).
OUTSIDE = "198.18.255.254"
IFNAMSIZ = 15
MGMT_IF = "mgmt0"
RACK_BRIDGE = "br-rack"
POD_BRIDGE = "br0"

HostKind = Literal["spine", "tor", "node", "vm", "upstream"]
LinkKind = Literal["node-tor", "vm-tor", "tor-spine", "spine-spine", "spine-upstream"]

# Rendered files every BGP-speaking server (node, control-plane VM) gets, and where they go on the host.
SERVER_CONFIGS = (
    ("bird.conf", "/etc/bird/bird.conf"),
    ("anycast-prefixes.conf", "/etc/bird/anycast-prefixes.conf"),
    ("anycast-healthchecker.conf", "/etc/anycast-healthchecker/anycast-healthchecker.conf"),
    ("anycast-healthchecker.d/services.conf", "/etc/anycast-healthchecker/anycast-healthchecker.d/services.conf"),
)

# A switch has no hardware profile in the model; pre-flight never checks switches' CPUs, but every lab host
# gets fake /proc files, so switches get this.
SWITCH_HARDWARE = {"cpu_vendor": "GenuineIntel", "sockets": 1, "cores": 4, "memory_gib": 16}


class TopologyError(ValueError):
    pass


def lab_prefix(prefix: str | None = None) -> str:
    value = prefix or os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
    if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", value):
        raise TopologyError(f"lab prefix {value!r}: 1-10 lower-case letters and digits, starting with a letter")
    return value


def mgmt_network(prefix: str) -> IPv4Network:
    """The default prefix owns 198.19.240.0/20; any other prefix gets its own /24 of 198.19.241-255, chosen
    from a hash of the prefix, so two labs can run side by side (the more specific route wins)."""
    if prefix == DEFAULT_PREFIX:
        return MGMT_RANGE
    third = 241 + zlib.crc32(prefix.encode()) % 15
    return IPv4Network(f"198.19.{third}.0/24")


@dataclass(frozen=True, slots=True)
class Address:
    ifname: str
    address: IPv4Interface


@dataclass(frozen=True, slots=True)
class LinkEnd:
    host: str
    ifname: str
    address: IPv4Interface | None  # None: a bridge port
    master: str | None = None  # bridge the port is enslaved to


@dataclass(frozen=True, slots=True)
class Link:
    kind: LinkKind
    a: LinkEnd  # downstream (server, ToR, lower spine)
    b: LinkEnd  # upstream
    session: str | None  # Session.id, None for a VM without BGP

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset((self.a.host, self.b.host))


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPv4Network
    via: IPv4Address
    metric: int = 0


@dataclass(frozen=True, slots=True)
class LabHost:
    name: str
    kind: HostKind
    role: str  # spine, tor, node, control_plane, etcd, etcd_events, upstream
    dc: str
    rack: str | None
    ns: str
    mgmt: IPv4Interface  # address of mgmt0 inside the host
    mgmt_peer: str  # the veth end in the root namespace, on the management bridge
    bridges: tuple[Address, ...] = ()  # bridges with an address (the ToR's rack bridge; br0 comes from CNI)
    loopback: tuple[IPv4Interface, ...] = ()  # /32s on lo: router id, API address, an upstream's probe
    routes: tuple[Route, ...] = ()  # static routes (VM default gateway)
    forwarding: bool = False
    daemons: tuple[str, ...] = ()  # service names (lab/daemons.py), in start order
    configs: tuple[tuple[str, str], ...] = ()  # (rendered relative path, absolute path on the host)
    hardware: tuple[tuple[str, object], ...] = ()
    anycast: tuple[IPv4Interface, ...] = ()  # service addresses the host's stand-in service proxy holds

    @property
    def hw(self) -> dict:
        return dict(self.hardware)


@dataclass(frozen=True)
class Topology:
    prefix: str
    site: str
    mgmt_bridge: str
    mgmt_gateway: IPv4Interface
    hosts: tuple[LabHost, ...]
    links: tuple[Link, ...]
    by_name: dict[str, LabHost] = field(default_factory=dict)

    def host(self, name: str) -> LabHost:
        try:
            return self.by_name[name]
        except KeyError:
            raise TopologyError(f"no lab host {name!r} (hosts: {', '.join(sorted(self.by_name))})") from None

    def link_between(self, a: str, b: str) -> Link:
        for link in self.links:
            if link.hosts == frozenset((a, b)):
                return link
        raise TopologyError(f"no link between {a} and {b}")

    def links_of(self, host: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if host in link.hosts)

    def addresses(self) -> list[tuple[str, IPv4Interface]]:
        """Every lab-data-plane address (not management) with the host that holds it."""
        out: list[tuple[str, IPv4Interface]] = []
        for h in self.hosts:
            out += [(h.name, b.address) for b in h.bridges]
            out += [(h.name, a) for a in (*h.loopback, *h.anycast)]
        for link in self.links:
            out += [(end.host, end.address) for end in (link.a, link.b) if end.address is not None]
        return out


def sample(nodes: Iterable[tuple[str, str | None]], mode: str) -> set[str]:
    """Node names a per-node option applies to: ``all``, ``none`` or ``sample`` (the first node, by name, of each
    rack). ``nodes`` are (hostname, rack) pairs."""
    nodes = list(nodes)
    if mode == "all":
        return {n for n, _ in nodes}
    if mode == "none":
        return set()
    if mode != "sample":
        raise TopologyError(f"{mode!r}: expected all, sample or none")
    first: dict[str | None, str] = {}
    for name, rack in nodes:
        first[rack] = min(name, first.get(rack, name))
    return set(first.values())


def derive(plan: Plan, prefix: str | None = None, health: str = "all") -> Topology:
    """The lab of ``plan``. ``health``: which nodes run the kube-proxy stand-in and anycast-healthchecker
    (``all``, ``sample``, ``none``); the others hold their anycast addresses with a socat stand-in and announce
    them unconditionally (``proxy-lite``: what the scale twin needs to fit, docs/lab.md)."""
    prefix = lab_prefix(prefix)
    checked = sample(((n.hostname, n.rack) for n in plan.nodes), health)
    net = mgmt_network(prefix)
    mgmt_hosts = net.hosts()
    gateway = IPv4Interface(f"{next(mgmt_hosts)}/{net.prefixlen}")
    counter = iter(range(1, 10_000))
    hosts: list[LabHost] = []
    links: list[Link] = []
    site_vms = {vm.name: vm for role in ("control_plane", "etcd", "etcd_events") for vm in getattr(plan.site.vms, role)}

    def mgmt() -> tuple[IPv4Interface, str]:
        try:
            address = next(mgmt_hosts)
        except StopIteration:
            raise TopologyError(f"management network {net} is too small for the lab") from None
        return IPv4Interface(f"{address}/{net.prefixlen}"), f"{prefix}m{next(counter)}"

    def hw(profile) -> tuple[tuple[str, object], ...]:
        return (("cpu_vendor", profile.cpu_vendor), ("sockets", profile.sockets), ("cores", profile.cores),
                ("memory_gib", profile.memory_gib))

    switch_hw = tuple(SWITCH_HARDWARE.items())

    for spine in plan.spines:
        addr, peer = mgmt()
        hosts.append(LabHost(
            name=spine.name, kind="spine", role="spine", dc=spine.dc, rack=None, ns=f"{prefix}-{spine.name}",
            mgmt=addr, mgmt_peer=peer, loopback=(IPv4Interface(f"{spine.router_id}/32"),), forwarding=True,
            daemons=("frr",), configs=((f"spines/{spine.name}/frr.conf", "/etc/frr/frr.conf"),), hardware=switch_hw,
        ))
    spine_ports: dict[str, int] = {}
    for tor in plan.tors:
        addr, peer = mgmt()
        loop = () if tor.router_id == tor.address else (IPv4Interface(f"{tor.router_id}/32"),)
        hosts.append(LabHost(
            name=tor.name, kind="tor", role="tor", dc=tor.dc, rack=tor.rack, ns=f"{prefix}-{tor.name}",
            mgmt=addr, mgmt_peer=peer,
            bridges=(Address(RACK_BRIDGE, IPv4Interface(f"{tor.address}/{tor.subnet.prefixlen}")),),
            loopback=loop, forwarding=True, daemons=("frr",),
            configs=((f"tors/{tor.name}/frr.conf", "/etc/frr/frr.conf"),), hardware=switch_hw,
        ))
        for j, s in enumerate(tor.uplinks, 1):
            spine_ports[s.b.host] = spine_ports.get(s.b.host, 0) + 1
            links.append(Link(
                "tor-spine",
                LinkEnd(tor.name, f"up{j}", IPv4Interface(f"{s.a.address}/{s.subnet.prefixlen}")),
                LinkEnd(s.b.host, f"down{spine_ports[s.b.host]}", IPv4Interface(f"{s.b.address}/{s.subnet.prefixlen}")),
                s.id,
            ))
    tor_ports: dict[str, int] = {}

    def rack_link(kind: LinkKind, host: str, address, prefixlen: int, tor: str, session: str | None) -> Link:
        tor_ports[tor] = tor_ports.get(tor, 0) + 1
        return Link(kind, LinkEnd(host, "eth0", IPv4Interface(f"{address}/{prefixlen}")),
                    LinkEnd(tor, f"swp{tor_ports[tor]}", None, RACK_BRIDGE), session)

    for node in plan.nodes:
        addr, peer = mgmt()
        anycast = tuple(IPv4Interface(f"{next(a.hosts())}/32") for a in plan.anycast)
        hosts.append(LabHost(
            name=node.hostname, kind="node", role="node", dc=node.dc, rack=node.rack, ns=f"{prefix}-{node.hostname}",
            mgmt=addr, mgmt_peer=peer, anycast=anycast,
            daemons=("proxy", "bird", "health") if node.hostname in checked else ("proxy-lite", "bird"),
            configs=(*((f"nodes/{node.hostname}/{rel}", target) for rel, target in SERVER_CONFIGS),
                     (f"nodes/{node.hostname}/cni.conflist", "/etc/cni/net.d/10-pods.conflist")),
            hardware=hw(node.hardware),
        ))
        links.append(rack_link("node-tor", node.hostname, node.address, node.prefixlen, node.tor, node.session.id))
    for vm in plan.vms:
        addr, peer = mgmt()
        daemons: tuple[str, ...]
        if vm.role == "control_plane":
            daemons, loop = ("apiserver", "bird", "health"), (IPv4Interface(f"{plan.api_address}/32"),)
            configs = tuple((f"control-plane/{vm.name}/{rel}", target) for rel, target in SERVER_CONFIGS)
        else:
            cluster = "etcd" if vm.role == "etcd" else "etcd-events"
            daemons, loop = (cluster,), ()
            configs = ((f"{cluster}/{vm.name}/etcd.conf.yml", f"/etc/{cluster}/etcd.conf.yml"),)
        hosts.append(LabHost(
            name=vm.name, kind="vm", role=vm.role, dc=vm.dc, rack=vm.rack, ns=f"{prefix}-{vm.name}",
            mgmt=addr, mgmt_peer=peer, loopback=loop,
            routes=(Route(IPv4Network("0.0.0.0/0"), vm.tor_address),),
            daemons=daemons, configs=configs, hardware=hw(plan.site.hardware[site_vms[vm.name].hardware]),
        ))
        links.append(rack_link("vm-tor", vm.name, vm.address, vm.prefixlen, vm.tor,
                               vm.session.id if vm.session else None))
    for up in plan.upstreams:
        addr, peer = mgmt()
        # An upstream also holds the probe addresses of its DC's other upstreams: the spines ECMP the default over
        # all of them, so a probe of one DC upstream may leave through a sibling (real borders reach each other's
        # loopbacks; lab upstreams have no link between them). The probe then proves "left through this DC".
        siblings = [u.router_id for u in plan.upstreams if u.dc == up.dc and u.name != up.name]
        loopback = tuple(IPv4Interface(f"{a}/32") for a in (up.router_id, *siblings, OUTSIDE))
        hosts.append(LabHost(
            name=up.name, kind="upstream", role="upstream", dc=up.dc, rack=None, ns=f"{prefix}-{up.name}",
            mgmt=addr, mgmt_peer=peer, loopback=loopback,
            forwarding=True,
            daemons=("frr",), configs=(), hardware=switch_hw,
        ))
    peer_ports: dict[str, int] = {}
    for s in plan.sessions:
        if s.kind not in ("spine-spine", "spine-upstream"):
            continue
        ends = []
        for end in (s.a, s.b):
            peer_ports[end.host] = peer_ports.get(end.host, 0) + 1
            ends.append(LinkEnd(end.host, f"peer{peer_ports[end.host]}",
                                IPv4Interface(f"{end.address}/{s.subnet.prefixlen}")))
        links.append(Link(s.kind, ends[0], ends[1], s.id))

    topo = Topology(prefix=prefix, site=plan.name, mgmt_bridge=f"{prefix}-mgmt", mgmt_gateway=gateway,
                    hosts=tuple(hosts), links=tuple(links), by_name={h.name: h for h in hosts})
    validate(topo)
    return topo


def validate(topo: Topology) -> None:
    """Refuse a topology that could leak: every data-plane address in 198.18.0.0/15, management inside
    198.19.240.0/20, interface names within IFNAMSIZ and unique per host, host names unique."""
    problems: list[str] = []
    for host, address in topo.addresses():
        if address.ip not in LAB_RANGE:
            problems.append(f"{host}: {address} is outside {LAB_RANGE}")
        if address.ip in MGMT_RANGE:
            problems.append(f"{host}: {address} collides with the management range {MGMT_RANGE}")
    for h in topo.hosts:
        for r in h.routes:
            if r.via not in LAB_RANGE:
                problems.append(f"{h.name}: route {r.dst} via {r.via} leaves {LAB_RANGE}")
        if h.mgmt.ip not in MGMT_RANGE:
            problems.append(f"{h.name}: management address {h.mgmt} is outside {MGMT_RANGE}")
    if topo.mgmt_gateway.ip not in MGMT_RANGE:
        problems.append(f"management gateway {topo.mgmt_gateway} is outside {MGMT_RANGE}")
    names: dict[str, set[str]] = {}
    root_names = [topo.mgmt_bridge, *(h.mgmt_peer for h in topo.hosts)]
    for h in topo.hosts:
        names[h.name] = {MGMT_IF, "lo", *(b.ifname for b in h.bridges)} | ({POD_BRIDGE} if h.kind == "node" else set())
    for link in topo.links:
        for end in (link.a, link.b):
            if end.ifname in names[end.host]:
                problems.append(f"{end.host}: interface {end.ifname} used twice")
            names[end.host].add(end.ifname)
    for name in [*root_names, *(n for s in names.values() for n in s)]:
        if len(name) > IFNAMSIZ:
            problems.append(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    if len(set(root_names)) != len(root_names):
        problems.append("root-namespace interface names collide")
    if len(topo.by_name) != len(topo.hosts):
        problems.append("host names collide")
    if problems:
        raise TopologyError("unsafe lab topology:\n  " + "\n  ".join(problems))
