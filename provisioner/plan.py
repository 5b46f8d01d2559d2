"""Site + allocations -> Plan: every derived fact, once.

Templates only format what the Plan says and checks only read it. A BGP session is one
:class:`Session` with two ends, so the node's BIRD config and its ToR's FRR config are rendered from
the same object and cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, collapse_addresses
from typing import Literal

from .etcd_timing import Timing, derive
from .health import HEALTH, HealthPolicy
from .ipam import AllocationChange, Allocations, link_id, spine_link_id
from .model import (
    BGP,
    RACK_LABEL,
    VM,
    ZONE_LABEL,
    DataCentre,
    Hardware,
    Rack,
    Site,
    Spine,
    Upstream,
    expanded_nodes,
)
from .util import gc_paused

VmRole = Literal["control_plane", "etcd", "etcd_events"]
SessionKind = Literal["node-tor", "vm-tor", "tor-spine", "spine-spine", "spine-upstream"]


@dataclass(frozen=True, slots=True)
class End:
    """One side of a BGP session."""

    host: str
    address: IPv4Address
    asn: int
    router_id: IPv4Address


@dataclass(frozen=True, slots=True)
class Session:
    """A BGP session. ``a`` is the downstream side (node, VM, ToR, lower spine, spine), ``b`` the upstream
    (ToR, spine, higher spine, upstream router).

    ``a_announces`` is exactly what ``a`` exports and what ``b`` accepts from ``a`` (empty: no
    per-neighbour filter beyond the fabric's own policy).
    """

    kind: SessionKind
    a: End
    b: End
    subnet: IPv4Network
    password_ref: str | None = None
    a_announces: tuple[IPv4Network, ...] = ()

    @property
    def id(self) -> str:
        return link_id(self.a.host, self.b.host)

    @property
    def ibgp(self) -> bool:
        return self.a.asn == self.b.asn

    @property
    def password_placeholder(self) -> str | None:
        """Stable stand-in for the secret in the rendered tree; apply replaces it (docs/network.md)."""
        return None if self.password_ref is None else f"@secret:{self.password_ref}@"

    def other(self, host: str) -> End:
        """The end of this session that is not ``host``."""
        return self.b if self.a.host == host else self.a

    def local(self, host: str) -> End:
        """The end of this session that is ``host``."""
        return self.a if self.a.host == host else self.b


@dataclass(frozen=True, slots=True)
class PlanNode:
    hostname: str
    dc: str
    rack: str
    role: str
    labels: tuple[tuple[str, str], ...]
    hardware_profile: str
    hardware: Hardware
    address: IPv4Address
    prefixlen: int  # of the rack subnet
    asn: int
    pod_cidr: IPv4Network
    tor: str
    session: Session
    serial: str | None = None
    mac: str | None = None

    @property
    def router_id(self) -> IPv4Address:
        return self.address

    @property
    def gateway(self) -> IPv4Address:
        """br0's address: the .254 of a /24 (the last usable address of the pod prefix)."""
        return self.pod_cidr.broadcast_address - 1

    @property
    def pod_range(self) -> tuple[IPv4Address, IPv4Address]:
        """Addresses host-local IPAM hands to pods: everything but network, gateway and broadcast."""
        return self.pod_cidr.network_address + 1, self.pod_cidr.broadcast_address - 2

    @property
    def announces(self) -> tuple[IPv4Network, ...]:
        return self.session.a_announces

    @property
    def node_labels(self) -> tuple[tuple[str, str], ...]:
        """The Node object's labels: the site's, plus the zone and rack provisioner owns, each key once
        (validation refuses a site label that contradicts an owned one)."""
        owned = {ZONE_LABEL: self.dc, RACK_LABEL: self.rack}
        return tuple(sorted({**dict(self.labels), **owned}.items()))


@dataclass(frozen=True, slots=True)
class PlanVM:
    name: str
    role: VmRole
    dc: str
    rack: str
    address: IPv4Address
    prefixlen: int
    tor: str
    tor_address: IPv4Address
    asn: int
    session: Session | None  # control-plane VMs announce the API address; etcd VMs speak no BGP


@dataclass(frozen=True, slots=True)
class PlanTor:
    name: str
    dc: str
    rack: str
    asn: int
    address: IPv4Address
    router_id: IPv4Address
    subnet: IPv4Network
    aggregate_pods: bool
    clients: tuple[Session, ...]  # node-tor and vm-tor sessions, this ToR is side b
    uplinks: tuple[Session, ...]  # tor-spine sessions, this ToR is side a
    aggregates: tuple[IPv4Network, ...]  # when aggregate_pods: the rack's own /24s, collapsed

    @property
    def announces_up(self) -> tuple[IPv4Network, ...]:
        """What the ToR sends its spines: rack subnet, aggregates, every client's announcements (pod /24s
        covered by an aggregate left out), each once, in order of first appearance."""
        out: list[IPv4Network] = [self.subnet, *self.aggregates]
        seen = set(out)  # membership in O(1): every client repeats the anycast ranges
        for s in self.clients:
            for p in s.a_announces:
                if p not in seen and not any(p.subnet_of(a) for a in self.aggregates):
                    out.append(p)
                    seen.add(p)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class PlanUpstream:
    """A border router outside the site: not rendered (it is not ours), but both ends of its sessions are
    in the Plan so the spines' side and the checks agree with what the upstream is told to expect."""

    name: str
    dc: str
    asn: int
    router_id: IPv4Address
    accept: tuple[IPv4Network, ...]  # what the site takes from it besides 0.0.0.0/0
    announces: tuple[IPv4Network, ...]  # what the site's spines send it
    sessions: tuple[Session, ...]  # spine-upstream, this upstream is side b


@dataclass(frozen=True, slots=True)
class PlanSpine:
    name: str
    dc: str
    asn: int
    router_id: IPv4Address
    downlinks: tuple[Session, ...]  # tor-spine, this spine is side b
    peers: tuple[Session, ...]  # spine-spine across DCs, this spine on either side
    uplinks: tuple[Session, ...] = ()  # spine-upstream, this spine is side a
    aggregates: tuple[IPv4Network, ...] = ()  # pod pools originated (with a blackhole) toward upstreams
    upstream_accept: tuple[IPv4Network, ...] = ()  # taken from the DC's upstreams besides the default
    upstream_out: tuple[IPv4Network, ...] = ()  # sent to the DC's upstreams


@dataclass(frozen=True, slots=True)
class EtcdMember:
    name: str
    dc: str
    rack: str
    address: IPv4Address


@dataclass(frozen=True, slots=True)
class EtcdCluster:
    """``name`` is the rendered directory and the data-dir name: ``etcd`` or ``etcd-events``."""

    name: str
    token: str
    members: tuple[EtcdMember, ...]
    client_port: int
    peer_port: int
    timing: Timing
    snapshot_count: int
    quota_backend_bytes: int
    auto_compaction_retention: str
    data_dir: str

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={self.peer_url(m)}" for m in self.members)

    @property
    def client_urls(self) -> tuple[str, ...]:
        return tuple(self.client_url(m) for m in self.members)

    def peer_url(self, member: EtcdMember) -> str:
        return f"https://{member.address}:{self.peer_port}"

    def client_url(self, member: EtcdMember) -> str:
        return f"https://{member.address}:{self.client_port}"


@dataclass(frozen=True)
class Plan:
    site: Site
    name: str
    nodes: tuple[PlanNode, ...]
    tors: tuple[PlanTor, ...]
    spines: tuple[PlanSpine, ...]
    vms: tuple[PlanVM, ...]
    sessions: tuple[Session, ...]
    etcd: EtcdCluster
    etcd_events: EtcdCluster
    anycast: tuple[IPv4Network, ...]
    api_address: IPv4Address
    service_cidr: IPv4Network
    allocations: Allocations
    change: AllocationChange
    upstreams: tuple[PlanUpstream, ...] = ()
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def bgp(self) -> BGP:
        return self.site.bgp

    @property
    def dcs(self) -> tuple[str, ...]:
        return tuple(dc.name for dc in self.site.dcs)

    @property
    def etcd_clusters(self) -> tuple[EtcdCluster, ...]:
        return (self.etcd, self.etcd_events)

    @property
    def control_plane(self) -> tuple[PlanVM, ...]:
        return tuple(vm for vm in self.vms if vm.role == "control_plane")

    @property
    def pod_pools(self) -> tuple[IPv4Network, ...]:
        return tuple(p.cidr for p in self.site.address_plan.pod_pools)

    @property
    def api_prefix(self) -> IPv4Network:
        return IPv4Network(self.api_address)

    @property
    def health(self) -> HealthPolicy:
        return HEALTH

    @cached_property
    def tor_by_name(self) -> dict[str, PlanTor]:
        return {t.name: t for t in self.tors}


@gc_paused
def build_plan(site: Site, allocations: Allocations, change: AllocationChange) -> Plan:
    ap = site.address_plan
    racks = _RackSessions(site, allocations)
    for dc in site.dcs:
        for rack in dc.racks:
            racks.add(dc, rack)
    spine_peers: dict[str, list[Session]] = {}
    all_spines = [(dc.name, s) for dc in site.dcs for s in dc.spines]
    mesh = _spine_mesh(site, allocations, all_spines, spine_peers)
    upstreams, spine_up = _upstreams(site, allocations, [t.subnet for t in racks.tors])
    spines = _spines(site, all_spines, racks.spine_down, spine_peers, upstreams, spine_up)
    vm_tuple = tuple(racks.vms)
    plan = Plan(
        site=site, name=site.site, nodes=tuple(racks.nodes), tors=tuple(racks.tors), spines=spines, vms=vm_tuple,
        sessions=(*racks.sessions, *mesh, *(s for u in upstreams for s in u.sessions)),
        etcd=_etcd_cluster(site, "etcd", [v for v in vm_tuple if v.role == "etcd"]),
        etcd_events=_etcd_cluster(site, "etcd-events", [v for v in vm_tuple if v.role == "etcd_events"]),
        anycast=tuple(ap.anycast), api_address=ap.api_address, service_cidr=ap.service_cidr,
        allocations=allocations, change=change, upstreams=upstreams,
    )
    object.__setattr__(plan, "groups", inventory_groups(plan))
    return plan


class _RackSessions:
    """Per rack, in site order: its nodes and VMs, their sessions to the ToR, the ToR's uplinks to the spines."""

    def __init__(self, site: Site, allocations: Allocations):
        self.site = site
        self.allocations = allocations
        self.anycast = tuple(site.address_plan.anycast)
        self.nodes: list[PlanNode] = []
        self.tors: list[PlanTor] = []
        self.vms: list[PlanVM] = []
        self.sessions: list[Session] = []
        self.spine_down: dict[str, list[Session]] = {}
        self.vms_by_rack: dict[str, list[tuple[VmRole, VM]]] = {}
        roles: tuple[VmRole, ...] = ("control_plane", "etcd", "etcd_events")
        for role in roles:
            for vm in getattr(site.vms, role):
                self.vms_by_rack.setdefault(vm.rack, []).append((role, vm))

    def add(self, dc: DataCentre, rack: Rack) -> None:
        tor_addr = rack.tor_address()
        tor_end = End(rack.tor.name, tor_addr, rack.asn, rack.tor.router_id)
        password = rack.bgp_password or self.site.bgp.password
        clients = self._nodes(dc, rack, tor_end, password) + self._vms(dc, rack, tor_end, password)
        uplinks = self._uplinks(dc, rack, password)
        self.sessions.extend(clients)
        self.sessions.extend(uplinks)
        self.tors.append(PlanTor(
            name=rack.tor.name, dc=dc.name, rack=rack.name, asn=rack.asn, address=tor_addr,
            router_id=rack.tor.router_id, subnet=rack.subnet, aggregate_pods=rack.aggregate_pods,
            clients=tuple(clients), uplinks=tuple(uplinks),
            # Only the rack's own /24s, collapsed: an aggregate never covers another rack's pods.
            aggregates=tuple(collapse_addresses(c.a_announces[0] for c in clients if c.kind == "node-tor"))
            if rack.aggregate_pods else (),
        ))

    def _nodes(self, dc: DataCentre, rack: Rack, tor_end: End, password: str | None) -> list[Session]:
        allocations, site = self.allocations, self.site
        clients: list[Session] = []
        for spec, _ in expanded_nodes(rack):
            address = spec.address if spec.address is not None else allocations.node_addresses[spec.hostname]
            pod = allocations.pod_cidrs[spec.hostname]
            end = End(spec.hostname, address, rack.asn, address)
            s = Session("node-tor", end, tor_end, rack.subnet, password, (pod, *self.anycast))
            clients.append(s)
            self.nodes.append(PlanNode(
                hostname=spec.hostname, dc=dc.name, rack=rack.name, role=spec.role,
                labels=tuple(sorted(spec.labels.items())), hardware_profile=spec.hardware,
                hardware=site.hardware[spec.hardware], address=address,
                prefixlen=rack.subnet.prefixlen, asn=rack.asn, pod_cidr=pod, tor=rack.tor.name,
                session=s, serial=spec.serial, mac=spec.mac,
            ))
        return clients

    def _vms(self, dc: DataCentre, rack: Rack, tor_end: End, password: str | None) -> list[Session]:
        """The rack's VMs; only control-plane VMs peer with the ToR (they announce the API address)."""
        clients: list[Session] = []
        api = IPv4Network(self.site.address_plan.api_address)
        for role, vm in self.vms_by_rack.get(rack.name, []):
            s = None
            if role == "control_plane":
                end = End(vm.name, vm.address, rack.asn, vm.address)
                s = Session("vm-tor", end, tor_end, rack.subnet, password, (api,))
                clients.append(s)
            self.vms.append(PlanVM(name=vm.name, role=role, dc=dc.name, rack=rack.name, address=vm.address,
                                   prefixlen=rack.subnet.prefixlen, tor=rack.tor.name,
                                   tor_address=tor_end.address, asn=rack.asn, session=s))
        return clients

    def _uplinks(self, dc: DataCentre, rack: Rack, password: str | None) -> list[Session]:
        uplinks = []
        for spine in dc.spines:
            link = self.allocations.fabric_links[link_id(spine.name, rack.tor.name)]
            s = Session("tor-spine",
                        End(rack.tor.name, link.broadcast_address, rack.asn, rack.tor.router_id),
                        End(spine.name, link.network_address, spine.asn, spine.router_id),
                        link, password)
            uplinks.append(s)
            self.spine_down.setdefault(spine.name, []).append(s)
        return uplinks


def _spine_mesh(site: Site, allocations: Allocations, all_spines: list[tuple[str, Spine]],
                spine_peers: dict[str, list[Session]]) -> list[Session]:
    """A full mesh of eBGP sessions between spines of different DCs."""
    sessions = []
    for i, (da, a) in enumerate(all_spines):
        for db, b in all_spines[i + 1:]:
            if da == db:
                continue
            # By name, not site order: reordering dcs: renumbers nothing (ipam.spine_link_id).
            x, y = sorted((a, b), key=lambda spine: spine.name)
            link = allocations.fabric_links[spine_link_id(a.name, b.name)]
            s = Session("spine-spine",
                        End(x.name, link.network_address, x.asn, x.router_id),
                        End(y.name, link.broadcast_address, y.asn, y.router_id),
                        link, site.bgp.password)
            sessions.append(s)
            spine_peers.setdefault(a.name, []).append(s)
            spine_peers.setdefault(b.name, []).append(s)
    return sessions


def _spines(site: Site, all_spines: list[tuple[str, Spine]], down: dict[str, list[Session]],
            peers: dict[str, list[Session]], upstreams: tuple[PlanUpstream, ...],
            up: dict[str, list[Session]]) -> tuple[PlanSpine, ...]:
    def of_dc(dc_name: str, attr: str) -> tuple[IPv4Network, ...]:
        return tuple(dict.fromkeys(p for u in upstreams if u.dc == dc_name for p in getattr(u, attr)))

    return tuple(
        PlanSpine(name=s.name, dc=dc_name, asn=s.asn, router_id=s.router_id,
                  downlinks=tuple(down.get(s.name, ())), peers=tuple(peers.get(s.name, ())),
                  uplinks=tuple(up.get(s.name, ())),
                  aggregates=_pool_aggregates(site) if up.get(s.name) else (),
                  upstream_accept=of_dc(dc_name, "accept"), upstream_out=of_dc(dc_name, "announces"))
        for dc_name, s in all_spines
    )


def _pool_aggregates(site: Site) -> tuple[IPv4Network, ...]:
    return tuple(p.cidr for p in site.address_plan.pod_pools)


def upstream_announces(site: Site, upstream: Upstream, rack_subnets: list[IPv4Network]) -> tuple[IPv4Network, ...]:
    """The exact prefixes the spines send ``upstream``, from the classes it names, in a fixed order."""
    ap = site.address_plan
    classes = {
        "pod_pools": list(_pool_aggregates(site)),
        "anycast": list(ap.anycast),
        "api_address": [IPv4Network(ap.api_address)],
        "rack_subnets": rack_subnets,
    }
    out: list[IPv4Network] = []
    for name in ("pod_pools", "anycast", "api_address", "rack_subnets"):
        if name in upstream.announce:
            out += [p for p in classes[name] if p not in out]
    return tuple(out)


def _upstreams(site: Site, allocations: Allocations, rack_subnets: list[IPv4Network]
               ) -> tuple[tuple[PlanUpstream, ...], dict[str, list[Session]]]:
    """Every spine of a DC peers with every upstream of the DC; the upstream is the higher side (b)."""
    out: list[PlanUpstream] = []
    spine_up: dict[str, list[Session]] = {}
    for dc in site.dcs:
        for up in dc.upstreams:
            sessions = []
            for spine in dc.spines:
                link = allocations.fabric_links[link_id(spine.name, up.name)]
                s = Session("spine-upstream",
                            End(spine.name, link.broadcast_address, spine.asn, spine.router_id),
                            End(up.name, link.network_address, up.asn, up.router_id),
                            link, up.password or site.bgp.password)
                sessions.append(s)
                spine_up.setdefault(spine.name, []).append(s)
            out.append(PlanUpstream(name=up.name, dc=dc.name, asn=up.asn, router_id=up.router_id,
                                    accept=tuple(up.accept),
                                    announces=upstream_announces(site, up, rack_subnets),
                                    sessions=tuple(sessions)))
    return tuple(out), spine_up


def _etcd_cluster(site: Site, name: str, vms: list[PlanVM]) -> EtcdCluster:
    e = site.etcd
    events = name == "etcd-events"
    return EtcdCluster(
        name=name,
        token=f"{site.site}-{name}",
        members=tuple(EtcdMember(v.name, v.dc, v.rack, v.address) for v in vms),
        client_port=e.events_client_port if events else e.client_port,
        peer_port=e.events_peer_port if events else e.peer_port,
        timing=derive(e),
        snapshot_count=e.snapshot_count,
        quota_backend_bytes=e.quota_backend_bytes,
        auto_compaction_retention=e.auto_compaction_retention,
        data_dir=f"/var/lib/{name}",
    )


def inventory_groups(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Ansible groups, derived from the model: per DC, per rack, per role and per kind of host."""
    groups: dict[str, list[str]] = {}

    def add(group: str, host: str) -> None:
        groups.setdefault(group.replace("-", "_"), []).append(host)

    for n in plan.nodes:
        add("nodes", n.hostname)
        add(n.dc, n.hostname)
        add(f"rack_{n.rack}", n.hostname)
        add(f"role_{n.role}", n.hostname)
    for t in plan.tors:
        add("tors", t.name)
        add(t.dc, t.name)
        add(f"rack_{t.rack}", t.name)
    for s in plan.spines:
        add("spines", s.name)
        add(s.dc, s.name)
    for v in plan.vms:
        add(v.role, v.name)
        add(v.dc, v.name)
    return {k: tuple(v) for k, v in sorted(groups.items())}
