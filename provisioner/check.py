"""Static checks over the Plan: what a network reviewer would catch, before merge.

Every check reads the Plan (never rendered text) and yields :class:`Finding` objects with a stable ID,
a severity, the objects involved, a message and a one-line hint. ``CHECKS`` is the catalogue (it is also
the table in docs/check.md). Checks are written against the general shape of the fault, not against
a particular site: they work on any Plan, including hand-built ones.

BGP session compatibility works like Batfish's ``bgpSessionCompatibility``: each host's neighbour table
is built from the sessions *as that host would configure them* (a node from ``node.session``, a ToR from
``tor.clients`` and ``tor.uplinks``, a spine from ``spine.downlinks`` and ``spine.peers``), and every
neighbour statement is matched against the statements of the host owning the peer address. A session
with an end missing, duplicated or disagreeing is therefore found even though the Plan normally
derives both ends from one object.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from .etcd_timing import ELECTION_MAX_MS
from .limits import Limits, load_limits, pool_headroom, spine_usage, tor_usage
from .load import parse_yaml, read_input, validate_file
from .plan import Plan, Session
from .util import did_you_mean

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: Severity
    objects: tuple[str, ...]
    message: str
    hint: str
    waived: bool = False
    waiver_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "objects": list(self.objects), "message": self.message,
                "hint": self.hint, "waived": self.waived, "waiver_reason": self.waiver_reason}


@dataclass(frozen=True)
class CheckOptions(Limits):
    """The shared limits (provisioner/limits.py) plus the date waivers expire against."""

    today: date | None = None  # for waiver expiry; None: the current date
    # False: allocations render would add are reported as pending (check before render);
    # True (--locked, CI and plan --against): a lock file that lacks them is LCK002.
    locked: bool = False

    def as_dict(self) -> dict[str, int | None]:
        return {**super().as_dict(), "locked": self.locked}


@dataclass(frozen=True, slots=True)
class CheckInfo:
    id: str
    severity: Severity
    family: str
    title: str


CHECKS: dict[str, CheckInfo] = {c.id: c for c in (
    CheckInfo("BGP001", "error", "BGP sessions", "UNKNOWN_REMOTE: the peer address of a neighbour belongs to no host"),
    CheckInfo("BGP002", "error", "BGP sessions", "HALF_OPEN: the peer exists but has no neighbour statement back"),
    CheckInfo("BGP003", "error", "BGP sessions", "MULTIPLE_REMOTES: more than one remote statement matches"),
    CheckInfo("BGP004", "error", "BGP sessions", "ASN mismatch: remote-as differs from the peer's local AS"),
    CheckInfo("BGP005", "error", "BGP sessions", "the two ends are not in one subnet"),
    CheckInfo("BGP006", "error", "BGP sessions", "addresses not mirrored: the ends name each other, addresses differ"),
    CheckInfo("PFX001", "error", "prefixes", "duplicate prefix (pod allocations, pools, subnets, anycast, ...)"),
    CheckInfo("PFX002", "error", "prefixes", "overlapping prefixes or an address inside a foreign prefix"),
    CheckInfo("PFX003", "error", "prefixes", "pod prefix outside its pool, of the wrong length or DC"),
    CheckInfo("ADR001", "error", "addresses", "duplicate interface address"),
    CheckInfo("ADR002", "error", "addresses", "duplicate router ID (or a router ID used as another host's address)"),
    CheckInfo("EXP001", "error", "export policy", "a host announces something other than its /24 plus anycast"),
    CheckInfo("EXP002", "error", "export policy", "a ToR accepts from a client something other than that"),
    CheckInfo("ANY001", "error", "anycast", "an anycast range has fewer than N announcers in a DC"),
    CheckInfo("ETC001", "error", "etcd", "even number of members"),
    CheckInfo("ETC002", "error", "etcd", "members not spread evenly over the DCs"),
    CheckInfo("ETC003", "error", "etcd", "one DC holds a majority of the members"),
    CheckInfo("ETC004", "error", "etcd", "two members of one cluster share a rack"),
    CheckInfo("ETC005", "error", "etcd", "timing or quota outside etcd's tuning rules"),
    CheckInfo("CPL001", "error", "control plane", "a DC has no control-plane VM (API anycast leaves the DC)"),
    CheckInfo("EGR001", "warning", "egress", "a DC has no upstream router (its egress crosses DCs)"),
    CheckInfo("EGR002", "error", "egress", "the site has no upstream router: nothing reaches the outside"),
    CheckInfo("CAP001", "warning", "capacity", "a pod pool has less free headroom than the threshold"),
    CheckInfo("LIM001", "error", "ToR limits", "more iBGP sessions on a ToR than the limit"),
    CheckInfo("LIM002", "error", "ToR limits", "more expected routes on a ToR than the limit"),
    CheckInfo("LIM003", "error", "ToR limits", "ECMP width below the number of anycast announcers"),
    CheckInfo("LIM004", "error", "ToR limits", "a client announces more prefixes than the ToR's max-prefix"),
    CheckInfo("LIM005", "error", "spine limits", "more expected routes on a spine than the limit"),
    CheckInfo("LCK001", "warning", "lock file", "orphaned allocation: in the lock, not in site.yaml"),
    CheckInfo("LCK002", "error", "lock file", "the lock file lacks allocations (or has stale links) for site.yaml"),
    CheckInfo("LCK003", "error", "lock file", "the Plan uses an address or pod prefix the lock does not record"),
    CheckInfo("WVR001", "warning", "waivers", "stale waiver: it matches no finding"),
    CheckInfo("WVR002", "warning", "waivers", "expired waiver: it no longer applies"),
)}


def _finding(cid: str, objects: Iterable[str], message: str, hint: str) -> Finding:
    return Finding(cid, CHECKS[cid].severity, tuple(objects), message, hint)


# --- BGP session compatibility ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One neighbour statement as ``host`` configures it."""

    host: str
    local_ip: IPv4Address
    local_as: int
    peer_host: str  # the description: who the host thinks is there
    peer_ip: IPv4Address
    remote_as: int
    subnet: IPv4Network
    kind: str


def _view(s: Session, local_side: str, host: str) -> Neighbor:
    local, remote = (s.a, s.b) if local_side == "a" else (s.b, s.a)
    return Neighbor(host, local.address, local.asn, remote.host, remote.address, remote.asn, s.subnet, s.kind)


def neighbor_tables(plan: Plan) -> dict[str, list[Neighbor]]:
    """host -> its neighbour statements, each from the object that host's config is rendered from."""
    tables: dict[str, list[Neighbor]] = defaultdict(list)
    for n in plan.nodes:
        tables[n.hostname].append(_view(n.session, "a", n.hostname))
    for v in plan.vms:
        if v.session is not None:
            tables[v.name].append(_view(v.session, "a", v.name))
    for t in plan.tors:
        tables[t.name].extend(_view(s, "b", t.name) for s in t.clients)
        tables[t.name].extend(_view(s, "a", t.name) for s in t.uplinks)
    for sp in plan.spines:
        tables[sp.name].extend(_view(s, "b", sp.name) for s in sp.downlinks)
        tables[sp.name].extend(_view(s, "a" if s.a.host == sp.name else "b", sp.name) for s in sp.peers)
    return tables


def owned_addresses(plan: Plan, tables: dict[str, list[Neighbor]]) -> dict[IPv4Address, set[str]]:
    owners: dict[IPv4Address, set[str]] = defaultdict(set)
    for n in plan.nodes:
        owners[n.address].add(n.hostname)
    for v in plan.vms:
        owners[v.address].add(v.name)
    for t in plan.tors:
        owners[t.address].add(t.name)
    for lid, link in plan.allocations.fabric_links.items():  # interfaces of the fabric /31s: "low~high"
        low, _, high = lid.partition("~")
        owners[link.network_address].add(low)
        owners[link.broadcast_address].add(high)
    for host, table in tables.items():
        for nb in table:
            owners[nb.local_ip].add(host)
    return owners


def _label(nb: Neighbor) -> str:
    return f"{nb.host} ({nb.local_ip}, AS {nb.local_as})"


def check_sessions(plan: Plan, _opts: CheckOptions) -> Iterator[Finding]:
    tables = neighbor_tables(plan)
    owners = owned_addresses(plan, tables)
    index: dict[tuple[IPv4Address, IPv4Address], list[Neighbor]] = defaultdict(list)
    for table in tables.values():
        for nb in table:
            index[(nb.local_ip, nb.peer_ip)].append(nb)
    reported: set[frozenset[tuple[str, IPv4Address, IPv4Address]]] = set()
    unmatched: list[Neighbor] = []
    for host in sorted(tables):
        for nb in tables[host]:
            remotes = [r for r in index.get((nb.peer_ip, nb.local_ip), ()) if r.host != host]
            if not remotes:
                unmatched.append(nb)
                continue
            if len(remotes) > 1:
                yield _finding(
                    "BGP003", (nb.host, *sorted({r.host for r in remotes})),
                    f"{_label(nb)} neighbour {nb.peer_ip}: {len(remotes)} remote statements match "
                    f"({', '.join(sorted(r.host for r in remotes))}); the session is configured more than once",
                    "each session must be configured exactly once on each end; remove the duplicate")
                continue
            r = remotes[0]
            key = frozenset({(nb.host, nb.local_ip, nb.peer_ip), (r.host, r.local_ip, r.peer_ip)})
            if key in reported:
                continue
            if nb.remote_as != r.local_as or r.remote_as != nb.local_as:
                reported.add(key)
                wrong = nb if nb.remote_as != r.local_as else r
                right = r if wrong is nb else nb
                yield _finding(
                    "BGP004", tuple(sorted((nb.host, r.host))),
                    f"{wrong.host} expects {right.host} ({right.local_ip}) in AS {wrong.remote_as}, "
                    f"but {right.host} speaks AS {right.local_as}",
                    "derive both ends' ASNs from the rack (iBGP to the ToR) or the spine layer (eBGP)")
                continue
            subnets_ok = nb.subnet == r.subnet and nb.local_ip in nb.subnet and nb.peer_ip in nb.subnet
            if not subnets_ok:
                reported.add(key)
                yield _finding(
                    "BGP005", tuple(sorted((nb.host, r.host))),
                    f"{nb.host} {nb.local_ip} (subnet {nb.subnet}) and {r.host} {r.local_ip} (subnet {r.subnet}) "
                    "are not in one subnet; the session is not directly connected",
                    "both ends must be addresses of the same rack subnet or fabric /31")
    # Unmatched statements: pair the ones whose ends name each other (addresses not mirrored).
    by_pair: dict[tuple[str, str], list[Neighbor]] = defaultdict(list)
    for nb in unmatched:
        by_pair[(nb.host, nb.peer_host)].append(nb)
    consumed: set[int] = set()
    for nb in unmatched:
        if id(nb) in consumed:
            continue
        back = [x for x in by_pair.get((nb.peer_host, nb.host), ()) if id(x) not in consumed]
        if back:
            other = back[0]
            consumed.update((id(nb), id(other)))
            yield _finding(
                "BGP006", tuple(sorted((nb.host, other.host))),
                f"{nb.host} peers with {nb.peer_ip} from {nb.local_ip}, but {other.host} peers with "
                f"{other.peer_ip} from {other.local_ip}: the addresses do not mirror",
                "derive both ends from one session object; each end's peer address is the other's local one")
            continue
        consumed.add(id(nb))
        peer_owners = owners.get(nb.peer_ip, set()) - {nb.host}
        if not peer_owners:
            yield _finding(
                "BGP001", (nb.host, nb.peer_host),
                f"{_label(nb)} has a {nb.kind} neighbour {nb.peer_ip} ({nb.peer_host}) that no host owns",
                "the other end is missing from the plan: add it, or remove the stale neighbour")
        else:
            yield _finding(
                "BGP002", (nb.host, *sorted(peer_owners)),
                f"{_label(nb)} peers with {nb.peer_ip} ({', '.join(sorted(peer_owners))}), which has no "
                f"neighbour statement for {nb.local_ip}",
                "configure the session on both ends (a ToR needs every client, a spine every ToR)")


# --- prefixes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pfx:
    net: IPv4Network
    kind: str  # pool, rack-subnet, anycast, service, fabric-pool, pod, vm, api
    owner: str


# container kind -> kinds it may legitimately contain
_ALLOWED = {"pool": {"pod"}, "rack-subnet": {"vm"}}


def _describe(p: _Pfx) -> str:
    return f"{p.kind} {p.net}" + (f" ({p.owner})" if p.owner else "")


def check_prefixes(plan: Plan, _opts: CheckOptions) -> Iterator[Finding]:
    site = plan.site
    items: list[_Pfx] = [_Pfx(p.cidr, "pool", p.name) for p in site.address_plan.pod_pools]
    items += [_Pfx(t.subnet, "rack-subnet", t.rack) for t in plan.tors]
    items += [_Pfx(a, "anycast", "") for a in plan.anycast]
    items.append(_Pfx(plan.service_cidr, "service", ""))
    items.append(_Pfx(site.address_plan.fabric_pool, "fabric-pool", ""))
    live = {n.hostname for n in plan.nodes}
    items += [_Pfx(n.pod_cidr, "pod", n.hostname) for n in plan.nodes]
    items += [_Pfx(net, "pod", h) for h, net in plan.allocations.pod_cidrs.items() if h not in live]
    items += [_Pfx(IPv4Network(v.address), "vm", v.name) for v in plan.vms]
    items.append(_Pfx(IPv4Network(plan.api_address), "api", "API address"))
    items.sort(key=lambda p: (int(p.net.network_address), p.net.prefixlen, p.kind, p.owner))
    stack: list[_Pfx] = []  # CIDRs nest or are disjoint: the open ones all contain the current one
    for p in items:
        start = int(p.net.network_address)
        while stack and int(stack[-1].net.broadcast_address) < start:
            stack.pop()
        for outer in stack:
            if outer.net == p.net:
                if outer.kind in ("vm", "api") and p.kind in ("vm", "api"):
                    continue  # duplicate host addresses are ADR001's
                yield _finding("PFX001", tuple(x for x in (outer.owner, p.owner) if x) or (str(p.net),),
                               f"{_describe(p)} duplicates {_describe(outer)}",
                               "every prefix is allocated once; re-allocate one of them (release and render)")
            elif p.kind not in _ALLOWED.get(outer.kind, ()):
                yield _finding("PFX002", tuple(x for x in (outer.owner, p.owner) if x) or (str(p.net),),
                               f"{_describe(p)} lies inside {_describe(outer)}",
                               "pod allocations belong in a pod pool, host addresses in their rack subnet, "
                               "and nothing else may overlap")
        stack.append(p)
    pools = site.address_plan.pod_pools
    for n in plan.nodes:
        fits = [p for p in pools if n.pod_cidr.subnet_of(p.cidr) and n.pod_cidr.prefixlen == p.node_prefix_len]
        if not fits:
            yield _finding("PFX003", (n.hostname,),
                           f"{n.hostname} pod prefix {n.pod_cidr} is in no pod pool with node prefix length "
                           f"/{n.pod_cidr.prefixlen}", "allocate pod prefixes only from the pools (render does)")
        elif all(p.dcs and n.dc not in p.dcs for p in fits):
            yield _finding("PFX003", (n.hostname,),
                           f"{n.hostname} pod prefix {n.pod_cidr} comes from pool {fits[0].name}, which is "
                           f"reserved for {', '.join(fits[0].dcs)}, not {n.dc}",
                           "release the node and let render allocate from a pool of its DC")


# --- addresses and router IDs ---------------------------------------------------------------


def check_addresses(plan: Plan, _opts: CheckOptions) -> Iterator[Finding]:
    iface: dict[IPv4Address, set[str]] = defaultdict(set)
    for n in plan.nodes:
        iface[n.address].add(n.hostname)
    for v in plan.vms:
        iface[v.address].add(v.name)
    for t in plan.tors:
        iface[t.address].add(t.name)
    for s in plan.sessions:
        if s.kind in ("tor-spine", "spine-spine"):
            iface[s.a.address].add(s.a.host)
            iface[s.b.address].add(s.b.host)
    reported: set[tuple[IPv4Address, frozenset[str]]] = set()
    for addr in sorted(iface):
        hosts = iface[addr]
        if len(hosts) > 1:
            reported.add((addr, frozenset(hosts)))
            yield _finding("ADR001", tuple(sorted(hosts)),
                           f"address {addr} is configured on {len(hosts)} hosts: {', '.join(sorted(hosts))}",
                           "give each interface its own address (fix site.yaml or the lock file)")
    rid: dict[IPv4Address, set[str]] = defaultdict(set)
    for n in plan.nodes:
        rid[n.router_id].add(n.hostname)
    for t in plan.tors:
        rid[t.router_id].add(t.name)
    for sp in plan.spines:
        rid[sp.router_id].add(sp.name)
    for v in plan.vms:
        if v.session is not None:
            rid[v.session.a.router_id].add(v.name)
    for addr in sorted(rid):
        hosts = rid[addr] | iface.get(addr, set())
        if len(hosts) > 1 and (addr, frozenset(hosts)) not in reported:
            users = sorted(rid[addr])
            others = sorted(iface.get(addr, set()) - rid[addr])
            what = f"router ID {addr} is used by {', '.join(users)}"
            if others:
                what += f" and is the address of {', '.join(others)}"
            yield _finding("ADR002", tuple(sorted(hosts)), what,
                           "router IDs must be unique in the fabric; BGP drops a peer with its own router ID")


# --- export policy --------------------------------------------------------------------------


def _expected_exports(plan: Plan) -> dict[str, tuple[str, set[IPv4Network]]]:
    out: dict[str, tuple[str, set[IPv4Network]]] = {}
    for n in plan.nodes:
        out[n.hostname] = ("its pod prefix plus the anycast ranges", {n.pod_cidr, *plan.anycast})
    for v in plan.control_plane:
        out[v.name] = ("the API address", {IPv4Network(plan.api_address)})
    return out


def _diff_sets(got: Iterable[IPv4Network], want: set[IPv4Network]) -> str:
    got_set = set(got)
    parts = []
    extra = sorted(got_set - want)
    missing = sorted(want - got_set)
    if extra:
        parts.append("extra " + ", ".join(map(str, extra)))
    if missing:
        parts.append("missing " + ", ".join(map(str, missing)))
    return "; ".join(parts)


def check_exports(plan: Plan, _opts: CheckOptions) -> Iterator[Finding]:
    expected = _expected_exports(plan)
    sessions = [(n.hostname, n.session) for n in plan.nodes]
    sessions += [(v.name, v.session) for v in plan.vms if v.session is not None]
    for host, s in sessions:
        what, want = expected.get(host, ("nothing (etcd VMs speak no BGP)", set()))
        if set(s.a_announces) != want:
            yield _finding("EXP001", (host,), f"{host} announces other than {what}: {_diff_sets(s.a_announces, want)}",
                           "a node exports exactly its pod /24 and the anycast ranges; a control-plane VM the "
                           "API address")
    for t in plan.tors:
        for s in t.clients:
            if s.a.host not in expected:
                continue  # a client that is not in the plan is BGP001's
            what, want = expected[s.a.host]
            if set(s.a_announces) != want:
                yield _finding("EXP002", (t.name, s.a.host),
                               f"{t.name} accepts from {s.a.host} other than {what}: {_diff_sets(s.a_announces, want)}",
                               "the ToR's per-client prefix list must be exactly what the client announces")


# --- anycast coverage -----------------------------------------------------------------------


def check_anycast(plan: Plan, opts: CheckOptions) -> Iterator[Finding]:
    counts: dict[tuple[IPv4Network, str], int] = Counter()
    for n in plan.nodes:
        for p in set(n.session.a_announces):
            counts[(p, n.dc)] += 1
    for rng in plan.anycast:
        for dc in plan.dcs:
            c = counts.get((rng, dc), 0)
            if c < opts.anycast_min_announcers:
                tail = ("traffic to it from that DC leaves the DC" if c == 0
                        else "losing them takes the range out of the DC")
                yield _finding("ANY001", (str(rng), dc),
                               f"anycast {rng} has {c} announcer{'s' if c != 1 else ''} in {dc} (minimum "
                               f"{opts.anycast_min_announcers}); {tail}",
                               "add nodes in that DC or lower --anycast-min-announcers with a waiver")


# --- etcd and control plane -----------------------------------------------------------------


def check_etcd(plan: Plan, _opts: CheckOptions) -> Iterator[Finding]:
    dcs = plan.dcs
    rtt = plan.site.etcd.inter_dc_rtt_ms
    for c in plan.etcd_clusters:
        total = len(c.members)
        names = tuple(m.name for m in c.members)
        if total % 2 == 0:
            yield _finding("ETC001", (c.name, *names),
                           f"{c.name} has {total} members: an even count tolerates no more failures than "
                           f"{total - 1} and adds a vote to every commit", "use an odd number of members (3 or 5)")
        per_dc = Counter(m.dc for m in c.members)
        quorum = total // 2 + 1
        majority = [dc for dc, k in per_dc.items() if k >= quorum and total > 0]
        for dc in sorted(majority):
            members = tuple(m.name for m in c.members if m.dc == dc)
            yield _finding("ETC003", (c.name, dc, *members),
                           f"{dc} holds {per_dc[dc]} of {total} {c.name} members ({', '.join(members)}): losing "
                           f"{dc} loses quorum", f"spread the members so no DC holds {quorum}")
        counts = [per_dc.get(dc, 0) for dc in dcs]
        if not majority and counts and max(counts) - min(counts) > 1:
            layout = ", ".join(f"{dc}: {per_dc.get(dc, 0)}" for dc in dcs)
            yield _finding("ETC002", (c.name,),
                           f"{c.name} members are not spread evenly over the DCs ({layout})",
                           "place one member per DC (for 5 members: 2, 2, 1)")
        racks: dict[str, list[str]] = defaultdict(list)
        for m in c.members:
            racks[m.rack].append(m.name)
        for rack, sharing in sorted(racks.items()):
            if len(sharing) > 1:
                yield _finding("ETC004", (c.name, rack, *sharing),
                               f"{c.name} members {', '.join(sharing)} share rack {rack}: one ToR or PDU failure "
                               "takes them together", "put each member of a cluster in its own rack")
        problems = []
        t = c.timing
        if not 0.5 * rtt <= t.heartbeat_ms <= 1.5 * rtt:
            problems.append(f"heartbeat {t.heartbeat_ms} ms is not 0.5-1.5x the inter-DC RTT of {rtt} ms")
        if t.election_ms < 10 * rtt:
            problems.append(f"election timeout {t.election_ms} ms is below 10x the RTT ({10 * rtt} ms)")
        if t.election_ms < 5 * t.heartbeat_ms:
            problems.append(f"election timeout {t.election_ms} ms is below 5x the heartbeat")
        if t.election_ms > ELECTION_MAX_MS:
            problems.append(f"election timeout {t.election_ms} ms is above etcd's maximum {ELECTION_MAX_MS} ms")
        if c.quota_backend_bytes > 8 * 1024**3:
            problems.append(f"quota {c.quota_backend_bytes} bytes is above etcd's suggested 8 GiB")
        for p in problems:
            yield _finding("ETC005", (c.name,), f"{c.name}: {p}",
                           "derive timings from etcd.inter_dc_rtt_ms (p99 RTT under load) or fix the override")
    cp_dcs = {v.dc for v in plan.control_plane}
    for dc in dcs:
        if dc not in cp_dcs:
            yield _finding("CPL001", (dc,), f"{dc} has no control-plane VM: API traffic from {dc} crosses DCs and "
                           f"a partition cuts {dc}'s kubelets off", "run one kube-apiserver VM per DC")


# --- capacity, ToR limits -------------------------------------------------------------------


def check_capacity(plan: Plan, opts: CheckOptions) -> Iterator[Finding]:
    for p in pool_headroom(plan, opts):
        if p["free"] < p["threshold"]:
            yield _finding("CAP001", (p["pool"],),
                           f"pod pool {p['pool']} ({p['cidr']}) has {p['free']} free /{p['node_prefix_len']} of "
                           f"{p['size']}; below the headroom of {p['threshold']} ({p['basis']})",
                           "add a pod pool before the next rack, or release orphaned nodes")


def check_limits(plan: Plan, opts: CheckOptions) -> Iterator[Finding]:
    tors = tor_usage(plan)
    by_name = {t.name: t for t in plan.tors}
    limit_per_node = plan.bgp.tor_max_prefix_per_node
    for row in tors:
        name = row["tor"]
        if row["sessions"] > opts.max_sessions_per_tor:
            yield _finding("LIM001", (name,),
                           f"{name} has {row['sessions']} iBGP sessions (limit {opts.max_sessions_per_tor})",
                           "split the rack or raise --max-sessions-per-tor to what the switch is qualified for")
        if row["routes"] > opts.max_routes_per_tor:
            yield _finding("LIM002", (name,),
                           f"{name} is expected to hold {row['routes']} routes (limit {opts.max_routes_per_tor})",
                           "aggregate pod prefixes (aggregate_pods) or raise --max-routes-per-tor")
        for rng, k in row["ecmp"].items():
            if k > opts.ecmp_max_width:
                yield _finding("LIM003", (name, rng),
                               f"{name} has {k} announcers of {rng} but ECMP width {opts.ecmp_max_width}: "
                               f"{k - opts.ecmp_max_width} of them get no traffic",
                               "raise maximum-paths (--ecmp-max-width) or announce from fewer nodes")
        for s in by_name[name].clients:
            k = len(set(s.a_announces))
            if k > limit_per_node:
                yield _finding("LIM004", (name, s.a.host),
                               f"{s.a.host} announces {k} prefixes to {name}, above its max-prefix of "
                               f"{limit_per_node} (bgp.tor_max_prefix_per_node): the session will be torn down",
                               "raise bgp.tor_max_prefix_per_node above 1 + the number of anycast ranges")
    for row in spine_usage(plan, tors):
        name = row["spine"]
        for rng, k in row["ecmp"].items():
            if k > opts.ecmp_max_width:
                yield _finding("LIM003", (name, rng),
                               f"{name} has {k} ToRs announcing {rng} but ECMP width {opts.ecmp_max_width}",
                               "raise maximum-paths (--ecmp-max-width)")
        if row["routes"] > opts.max_routes_per_spine:
            yield _finding("LIM005", (name,),
                           f"{name} is expected to hold {row['routes']} routes (limit {opts.max_routes_per_spine})",
                           "aggregate pod prefixes (aggregate_pods) or raise --max-routes-per-spine")


# --- lock file ------------------------------------------------------------------------------


def pending_allocations(plan: Plan) -> dict[str, dict[str, str] | list[str]]:
    """What a render would add to (or free from) the lock file, allocated in memory like render does."""
    ch, allocs = plan.change, plan.allocations
    return {
        "pod_cidrs": {h: str(allocs.pod_cidrs[h]) for h in ch.added_pods},
        "node_addresses": {h: str(allocs.node_addresses[h]) for h in ch.added_addresses},
        "fabric_links": {k: str(allocs.fabric_links[k]) for k in ch.added_links},
        "fabric_links_freed": list(ch.freed_links),
    }


def check_lock(plan: Plan, opts: CheckOptions) -> Iterator[Finding]:
    ch = plan.change
    allocs = plan.allocations
    for host in ch.orphaned:
        yield _finding("LCK001", (host,),
                       f"{host} is in the lock file ({allocs.pod_cidrs.get(host)}) but not in site.yaml: "
                       "the /24 stays reserved", f"run `provisioner release <site> {host}` once it is gone for good")
    if opts.locked:
        yield from _lock_stale(plan)
    yield from _lock_moved(plan)


def _lock_stale(plan: Plan) -> Iterator[Finding]:
    ch = plan.change
    missing = sorted(set(ch.added_pods) | set(ch.added_addresses))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        yield _finding("LCK002", tuple(missing),
                       f"the lock file has no allocation for {len(missing)} node(s) of site.yaml: {shown}",
                       "run `provisioner render` and commit allocations.yaml with the change")
    links = sorted(set(ch.added_links) | set(ch.freed_links))
    if links:
        yield _finding("LCK002", tuple(links),
                       f"the lock file's fabric links disagree with site.yaml: {len(ch.added_links)} to add, "
                       f"{len(ch.freed_links)} to free", "run `provisioner render` and commit allocations.yaml")


def _lock_moved(plan: Plan) -> Iterator[Finding]:
    allocs = plan.allocations
    for n in plan.nodes:
        locked = allocs.pod_cidrs.get(n.hostname)
        if locked is not None and locked != n.pod_cidr:
            yield _finding("LCK003", (n.hostname,),
                           f"{n.hostname} uses pod prefix {n.pod_cidr} but the lock records {locked}",
                           "allocations never move: the plan must use the locked prefix")
        addr = allocs.node_addresses.get(n.hostname)
        if addr is not None and addr != n.address:
            yield _finding("LCK003", (n.hostname,),
                           f"{n.hostname} uses address {n.address} but the lock records {addr}",
                           "allocations never move: the plan must use the locked address")


def check_egress(plan: Plan, _opts: CheckOptions) -> Iterator[Finding]:
    """Every DC has a way out of its own: the default its spines pass down comes from its upstreams (another DC's
    default, at local-preference 50, is the fallback, not the design)."""
    if not plan.upstreams:
        yield _finding("EGR002", (plan.name,), f"site {plan.name} has no upstream router: no default route reaches "
                       "a node, so no pod can pull an image or reach NTP or DNS outside the site",
                       "list the border routers under dcs[].upstreams")
        return
    with_upstreams = {u.dc for u in plan.upstreams}
    for dc in plan.dcs:
        if dc not in with_upstreams:
            yield _finding("EGR001", (dc,), f"{dc} has no upstream router: its egress leaves through another DC's "
                           "spines and upstreams", f"add dcs[{dc}].upstreams")


CHECK_FUNCTIONS: tuple[Callable[[Plan, CheckOptions], Iterable[Finding]], ...] = (
    check_sessions, check_prefixes, check_addresses, check_exports, check_anycast, check_etcd,
    check_egress, check_capacity, check_limits, check_lock,
)


def run_checks(plan: Plan, options: CheckOptions | None = None, waivers: Iterable[Waiver] = ()) -> list[Finding]:
    """Every finding of every check, sorted (errors first), with waivers applied."""
    opts = options or CheckOptions()
    findings: list[Finding] = []
    for fn in CHECK_FUNCTIONS:
        findings.extend(fn(plan, opts))
    findings = apply_waivers(findings, list(waivers), opts.today or date.today())
    return sorted(findings, key=sort_key)


def sort_key(f: Finding) -> tuple[bool, bool, str, tuple[str, ...], str]:
    return (f.waived, f.severity != "error", f.id, f.objects, f.message)


# --- waivers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waiver:
    """Accept a finding: ``id`` and ``object`` (one of the finding's objects, or ``*``), with a reason."""

    id: str
    object: str
    reason: str
    expires: date | None = None
    reviewed_by: str | None = None
    where: str = ""  # file:line, for the stale/expired warnings

    def matches(self, f: Finding) -> bool:
        return f.id == self.id and (self.object == "*" or self.object in f.objects)


def apply_waivers(findings: list[Finding], waivers: list[Waiver], today: date) -> list[Finding]:
    out: list[Finding] = []
    live = [w for w in waivers if w.expires is None or w.expires >= today]
    used: set[int] = set()
    for f in findings:
        hit = next((i for i, w in enumerate(live) if w.matches(f)), None) if f.id[:3] != "WVR" else None
        if hit is not None:
            used.add(hit)
            w = live[hit]
            f = replace(f, waived=True, waiver_reason=w.reason + (f" (reviewed by {w.reviewed_by})"
                                                                   if w.reviewed_by else ""))
        out.append(f)
    for i, w in enumerate(live):
        if i not in used:
            out.append(_finding("WVR001", (w.id, w.object),
                                f"waiver {w.id} for {w.object} at {w.where} matches no finding",
                                "remove the waiver: the problem it accepted is gone"))
    for w in waivers:
        if w.expires is not None and w.expires < today:
            out.append(_finding("WVR002", (w.id, w.object),
                                f"waiver {w.id} for {w.object} at {w.where} expired on {w.expires}",
                                "fix the finding, or renew the waiver with a new review"))
    return out


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    fs = list(findings)
    return {
        "errors": sum(1 for f in fs if f.severity == "error" and not f.waived),
        "warnings": sum(1 for f in fs if f.severity == "warning" and not f.waived),
        "waived": sum(1 for f in fs if f.waived),
    }


# --- check.yaml and waivers.yaml ------------------------------------------------------------

WAIVERS_FILE = "waivers.yaml"


def load_options(directory: Path, overrides: dict[str, int | None] | None = None) -> CheckOptions:
    """Defaults, then ``<site>/check.yaml`` (optional), then command-line overrides (not None)."""
    return load_limits(directory, overrides, CheckOptions())


def _nonempty(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _known_check(value: str) -> str:
    if value not in CHECKS:
        raise ValueError(f"unknown check ID {value!r}{did_you_mean(value, CHECKS)}")
    return value


def _iso_date(value: object) -> object:
    """YAML reads ``2030-01-01`` as a date and ``"2030-01-01"`` as a string: both are the date; a time is not."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    elif isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise ValueError("must be a date (YYYY-MM-DD)")


Text = Annotated[str, AfterValidator(_nonempty)]


class WaiverEntry(BaseModel):
    """One entry of ``waivers.yaml``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[Text, AfterValidator(_known_check)]
    object: Text
    reason: Text
    expires: Annotated[date | None, BeforeValidator(_iso_date)] = None
    reviewed_by: str | None = None


class WaiversFile(BaseModel):
    """``waivers.yaml``: ``waivers: [{id, object, reason, expires?, reviewed_by?}]`` (``waivers:`` alone is none)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    waivers: Annotated[list[WaiverEntry], BeforeValidator(lambda v: [] if v is None else v)] = []


def load_waivers(directory: Path) -> list[Waiver]:
    """``<site>/waivers.yaml`` (optional); every bad entry is reported at once with its line."""
    path = directory / WAIVERS_FILE
    if not path.is_file():
        return []
    text = read_input(path)
    if not text.strip():
        return []
    doc = parse_yaml(text, str(path))
    parsed = validate_file(doc, WaiversFile)
    out: list[Waiver] = []
    for i, entry in enumerate(parsed.waivers):
        line = doc.line_of(("waivers", i))
        out.append(Waiver(id=entry.id, object=entry.object, reason=entry.reason.strip(), expires=entry.expires,
                          reviewed_by=entry.reviewed_by, where=f"{doc.file}:{line}" if line else doc.file))
    return out
