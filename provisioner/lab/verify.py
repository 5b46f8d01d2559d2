"""`lab verify`: what the design promises, checked on the running lab against facts from the Plan.

Every expectation is derived from the Plan (sessions, pod prefixes, anycast ranges, API address, etcd
members) and from the failures recorded by `lab fail`: a session with a failed end or a cut link is expected
down, a route that has lost every path is expected gone (those rows are "drill" checks). Verify polls until
every check passes or the timeout expires, so it can run right after `up`, `fail` or `restore`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from ..pipeline import compile_site
from ..plan import Plan, Session
from . import state as st
from .dataplane import probes, run_probes
from .hosts import host_exec
from .netns import run
from .topology import Topology, derive

POLL = 3.0
TRANSIENT_KINDS = ("crash", "restart")


@dataclass(frozen=True)
class Check:
    kind: str  # bgp, route, anycast, api, etcd, dataplane, drill
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    checks: list[Check]
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    drills: list[dict[str, Any]] = field(default_factory=list)  # `lab drill` measurements: event -> loss

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def rows(self) -> list[tuple[str, str, str]]:
        return [(c.name, "ok" if c.ok else "FAIL", c.detail) for c in self.checks]

    def summary(self) -> str:
        drills = sum(1 for c in self.checks if c.kind == "drill")
        active = "; failures in effect: " + ", ".join(_describe(f) for f in self.failures) if self.failures else ""
        verdict = "PASS" if self.ok else f"FAIL ({len(self.failed)} failed: {', '.join(c.name for c in self.failed)})"
        return (f"{verdict}: {len(self.checks)} checks ({drills} drill checks) in {self.seconds:.1f}s{active}")

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 1), "failures": self.failures,
                "checks": [{"kind": c.kind, "name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
                "drills": self.drills}


def _describe(f: dict[str, Any]) -> str:
    return f"{f['kind']} {' '.join(f['target'])}"


# --- the failure model --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Health:
    down_hosts: frozenset[str]
    cut_links: frozenset[frozenset[str]]
    unhealthy: frozenset[str] = frozenset()  # hosts up, but their served service (proxy, apiserver) stopped

    @classmethod
    def of(cls, state: dict[str, Any]) -> Health:
        hosts: set[str] = set()
        links: set[frozenset[str]] = set()
        unhealthy: set[str] = set()
        for f in state.get("failures", []):
            if f["kind"] == "link":
                links.add(frozenset(f["target"]))
            elif f["kind"] in TRANSIENT_KINDS:
                continue  # a crash or restart the host recovers from by itself: nothing stays down
            elif f["kind"] == "service":
                unhealthy.update(f["hosts"])
            else:
                hosts.update(f["hosts"])
        return cls(frozenset(hosts), frozenset(links), frozenset(unhealthy))

    def up(self, host: str) -> bool:
        return host not in self.down_hosts

    def announces_anycast(self, node: str) -> bool:
        return self.up(node) and node not in self.unhealthy

    def announces_api(self, vm: str) -> bool:
        return self.up(vm) and vm not in self.unhealthy

    def session_up(self, s: Session) -> bool:
        return self.up(s.a.host) and self.up(s.b.host) and frozenset((s.a.host, s.b.host)) not in self.cut_links


# --- collection ---------------------------------------------------------------------------------------------

def parse_bird_protocols(text: str) -> dict[str, str]:
    """``birdc show protocols all`` -> {neighbor address: BGP state}."""
    out: dict[str, str] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        fields = line.split()
        if line and not line[0].isspace() and len(fields) >= 4 and fields[1] == "BGP":
            current = {"state": fields[5] if len(fields) > 5 else fields[3]}
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("BGP state:"):
            current["state"] = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("Neighbor address:"):
            out[stripped.split(":", 1)[1].strip()] = current.get("state", "?")
    return out


def gateways(route: dict[str, Any]) -> set[str]:
    if "nexthops" in route:
        return {nh.get("gateway", nh.get("dev", "?")) for nh in route["nexthops"]}
    return {route.get("gateway", "direct")} if route.get("gateway") else {"direct"}


@dataclass
class Snapshot:
    frr: dict[str, dict[str, str]]  # switch -> {peer address: state}
    bird: dict[str, dict[str, str]]  # server -> {neighbor address: state}
    routes: dict[str, dict[str, set[str]]]  # host -> {dst: gateways}


def collect(state: dict[str, Any], topo: Topology, health: Health) -> Snapshot:
    def frr(host: str) -> dict[str, str]:
        out = host_exec(state["site"], host, ["vtysh", "-c", "show bgp summary json"], state=state, timeout=20)
        try:
            peers = json.loads(out.stdout or "{}").get("ipv4Unicast", {}).get("peers", {})
        except ValueError:
            return {}
        return {addr: p.get("state", "?") for addr, p in peers.items()}

    def bird(host: str) -> dict[str, str]:
        out = host_exec(state["site"], host, ["birdc", "-s", "/run/bird/bird.ctl", "show", "protocols", "all"],
                        state=state, timeout=20)
        return parse_bird_protocols(out.stdout) if out.returncode == 0 else {}

    def routes(host: str) -> dict[str, set[str]]:
        out = run(["ip", "-n", state["hosts"][host]["ns"], "-j", "-4", "route", "show"], check=False, timeout=20)
        try:
            entries = json.loads(out.stdout or "[]")
        except ValueError:
            return {}
        table: dict[str, set[str]] = {}
        for r in entries:
            dst = r.get("dst", "")
            dst = "0.0.0.0/0" if dst == "default" else (dst if "/" in dst else f"{dst}/32")
            table.setdefault(dst, set()).update(gateways(r))
        return table

    switches = [h.name for h in topo.hosts if h.kind in ("tor", "spine", "upstream") and health.up(h.name)]
    speakers = [h.name for h in topo.hosts if "bird" in h.daemons and health.up(h.name)]
    jobs: list[tuple[str, str, Callable[[str], Any]]] = [("frr", h, frr) for h in switches]
    jobs += [("bird", h, bird) for h in speakers] + [("routes", h, routes) for h in switches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda j: (j[0], j[1], j[2](j[1])), jobs))
    snap = Snapshot({}, {}, {})
    for kind, host, value in results:
        getattr(snap, kind)[host] = value
    return snap


# --- checks -------------------------------------------------------------------------------------------------

def bgp_checks(plan: Plan, health: Health, snap: Snapshot) -> list[Check]:
    checks = []

    def side(host: str, peer_address: str) -> str:
        table = snap.frr.get(host) if host in snap.frr else snap.bird.get(host)
        if table is None:
            return "not running"
        return table.get(peer_address, "no such peer")

    for s in plan.sessions:
        a_state = side(s.a.host, str(s.b.address)) if health.up(s.a.host) else "failed"
        b_state = side(s.b.host, str(s.a.address)) if health.up(s.b.host) else "failed"
        name = f"bgp {s.a.host} ~ {s.b.host}"
        detail = f"{s.a.host}: {a_state}; {s.b.host}: {b_state}"
        if health.session_up(s):
            checks.append(Check("bgp", name, a_state == b_state == "Established", detail))
        else:
            down = all(x != "Established" for x in (a_state, b_state))
            checks.append(Check("drill", f"drill: {name} down", down, detail))
    return checks


def _route_check(kind: str, name: str, table: dict[str, set[str]], dst: IPv4Network, want: set[str]) -> Check:
    got = table.get(str(dst), set())
    ok = got == want
    return Check(kind, name, ok, f"{dst} via {', '.join(sorted(got)) or 'nothing'}"
                 + ("" if ok else f" (want {', '.join(sorted(want)) or 'no route'})"))


def route_checks(plan: Plan, health: Health, snap: Snapshot) -> list[Check]:
    checks: list[Check] = []
    dc_of = {t.name: t.dc for t in plan.tors} | {s.name: s.dc for s in plan.spines}
    # ToRs: each node's /24 via that node; anycast ECMP over the rack's nodes; API address via the rack's CP VM
    for tor in plan.tors:
        if not health.up(tor.name):
            continue
        table = snap.routes.get(tor.name, {})
        nodes = [s for s in tor.clients if s.kind == "node-tor"]
        up_nodes = [s for s in nodes if health.session_up(s) and health.announces_anycast(s.a.host)]
        for s in nodes:
            pod = s.a_announces[0]
            if health.session_up(s):
                checks.append(_route_check("route", f"route {tor.name}: {s.a.host} /24", table, pod,
                                           {str(s.a.address)}))
            else:
                checks.append(_route_check("drill", f"drill: {s.a.host} /24 gone from {tor.name}", table, pod, set()))
        for rng in plan.anycast:
            if up_nodes:
                checks.append(_route_check("anycast", f"anycast {tor.name}: ECMP over {len(up_nodes)} nodes", table,
                                           rng, {str(s.a.address) for s in up_nodes}))
        cps = [s for s in tor.clients if s.kind == "vm-tor" and health.session_up(s) and health.announces_api(s.a.host)]
        if cps:
            checks.append(_route_check("api", f"api {tor.name}: from {', '.join(s.a.host for s in cps)}", table,
                                       IPv4Network(f"{plan.api_address}/32"), {str(s.a.address) for s in cps}))
    # Spines: the DC's /24s via their ToR; anycast ECMP across the DC's racks; other DCs' paths present while
    # some path exists, gone when none does.
    reach = _spine_reachability(plan, health)
    for spine in plan.spines:
        if not health.up(spine.name):
            continue
        table = snap.routes.get(spine.name, {})
        local = [d for d in spine.downlinks if health.session_up(d)]
        racks = {d.a.host: d for d in local}
        announcing: set[str] = set()
        api_from: set[str] = set()
        for tor in plan.tors:
            if tor.dc != spine.dc:
                continue
            for s in tor.clients:
                if s.kind == "node-tor":
                    pod = s.a_announces[0]
                    if tor.name in racks and health.session_up(s):
                        checks.append(_route_check("route", f"route {spine.name}: {s.a.host} /24", table, pod,
                                                   {str(racks[tor.name].a.address)}))
                        if health.announces_anycast(s.a.host):
                            announcing.add(str(racks[tor.name].a.address))
                elif s.kind == "vm-tor" and tor.name in racks and health.session_up(s) \
                        and health.announces_api(s.a.host):
                    api_from.add(str(racks[tor.name].a.address))
        for rng in plan.anycast:
            if announcing:
                checks.append(_route_check("anycast", f"anycast {spine.name}: ECMP over {len(announcing)} racks",
                                           table, rng, announcing))
            else:
                present = bool(table.get(str(rng)))
                checks.append(Check("drill", f"drill: anycast {spine.name}: fails over to other DCs", present,
                                    f"{rng} via {', '.join(sorted(table.get(str(rng), set()))) or 'nothing'}"))
        if api_from:
            checks.append(_route_check("api", f"api {spine.name}: via {len(api_from)} racks", table,
                                       IPv4Network(f"{plan.api_address}/32"), api_from))
        for dc in plan.dcs:
            if dc == spine.dc:
                continue
            nodes = [n for n in plan.nodes if n.dc == dc]
            expected = [n for n in nodes if _node_reachable(plan, health, reach, spine.name, n)]
            gone = [n for n in nodes if n not in expected]
            present = [n for n in nodes if table.get(str(n.pod_cidr))]
            if expected:
                ok = all(n in present for n in expected)
                checks.append(Check("route", f"route {spine.name}: {dc} /24s", ok and not (set(present) & set(gone)),
                                    f"{len([n for n in expected if n in present])}/{len(expected)} present"))
            if gone:
                left = [n.hostname for n in gone if n in present]
                checks.append(Check("drill", f"drill: {dc} paths gone from {spine.name}", not left,
                                    f"{len(gone)} /24s expected gone" + (f"; still there: {', '.join(left)}"
                                                                        if left else "; all gone")))
    # Anycast locality: while a DC has announcers, its switches' anycast next hops are all inside the DC.
    local_addrs: dict[str, set[str]] = {}
    for s in plan.sessions:
        if s.kind in ("node-tor", "tor-spine"):
            local_addrs.setdefault(dc_of[s.b.host], set()).add(str(s.a.address))
    for dc in plan.dcs:
        sw = [n for n in (*(t.name for t in plan.tors if t.dc == dc), *(s.name for s in plan.spines if s.dc == dc))
              if health.up(n) and n in snap.routes]
        if not sw:
            continue
        hops = {h for n in sw for rng in plan.anycast for h in snap.routes[n].get(str(rng), set())}
        outside = hops - local_addrs.get(dc, set())
        has_announcers = any(health.session_up(s) and dc_of[s.b.host] == dc and health.announces_anycast(s.a.host)
                             for s in plan.sessions if s.kind == "node-tor")
        if has_announcers:
            checks.append(Check("anycast", f"anycast stays in {dc}", bool(hops) and not outside,
                                f"{len(hops)} next hops on {len(sw)} switches"
                                + (f"; outside {dc}: {', '.join(sorted(outside))}" if outside else ", all in " + dc)))
    return checks


def _spine_reachability(plan: Plan, health: Health) -> dict[str, set[str]]:
    """spine -> spines it can reach over live spine-spine sessions (itself included)."""
    adj: dict[str, set[str]] = {s.name: set() for s in plan.spines if health.up(s.name)}
    for s in plan.sessions:
        if s.kind == "spine-spine" and health.session_up(s):
            adj[s.a.host].add(s.b.host)
            adj[s.b.host].add(s.a.host)
    reach = {}
    for start in adj:
        seen, todo = {start}, [start]
        while todo:
            for nxt in adj[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        reach[start] = seen
    return reach


def _node_reachable(plan: Plan, health: Health, reach: dict[str, set[str]], spine: str, node) -> bool:
    if not health.session_up(node.session):
        return False
    tor = next(t for t in plan.tors if t.name == node.tor)
    return any(health.session_up(u) and u.b.host in reach.get(spine, set()) for u in tor.uplinks)


def etcd_checks(state: dict[str, Any], plan: Plan, health: Health) -> list[Check]:
    pki = Path(state["pki"])
    creds = [f"--cacert={pki / 'control-plane/etcd/ca.crt'}",
             f"--cert={pki / 'control-plane/apiserver-etcd-client.crt'}",
             f"--key={pki / 'control-plane/apiserver-etcd-client.key'}"]
    drill = bool(health.down_hosts or health.cut_links)
    checks = []
    tors = {t.name: t for t in plan.tors}

    def reachable(vm) -> bool:
        # the member's host, its ToR and the link between them are up, and the ToR has a live uplink
        if not (health.up(vm.name) and health.up(vm.tor)):
            return False
        if frozenset((vm.name, vm.tor)) in health.cut_links:
            return False
        return any(health.session_up(u) for u in tors[vm.tor].uplinks)

    vms = {v.name: v for v in plan.vms}
    for cluster in plan.etcd_clusters:
        alive = [m for m in cluster.members if reachable(vms[m.name])]
        if not alive:
            checks.append(Check("etcd", f"etcd {cluster.name}", False, "no member left"))
            continue
        urls = [cluster.client_url(m) for m in alive]
        base = ["etcdctl", f"--endpoints={','.join(urls)}", "--dial-timeout=3s", "--command-timeout=6s", *creds]

        def ctl(*args: str, where: str = alive[0].name, base=base) -> Any:
            return host_exec(state["site"], where, [*base, *args], state=state, timeout=20)

        health_out = ctl("endpoint", "health", "-w", "json")
        try:
            healthy = [e for e in json.loads(health_out.stdout or "[]") if e.get("health")]
        except ValueError:
            healthy = []
        members_out = ctl("member", "list", "-w", "json")
        try:
            members = json.loads(members_out.stdout or "{}").get("members", [])
        except ValueError:
            members = []
        want = len(cluster.members)
        ok = len(healthy) == len(alive) and len(members) == want
        checks.append(Check("etcd", f"etcd {cluster.name}: healthy", ok,
                            f"{len(members)}/{want} members, {len(healthy)}/{len(alive)} live endpoints healthy"
                            + ("" if ok else f" {(health_out.stderr or '').strip()[:200]}")))
        key = ("/events" if cluster.name == "etcd-events" else "") + "/provisioner-lab/verify"
        put = ctl("put", key, str(time.time()))
        name = f"drill: etcd {cluster.name} accepts writes" if drill else f"etcd {cluster.name}: write"
        checks.append(Check("drill" if drill else "etcd", name, put.returncode == 0 and "OK" in put.stdout,
                            f"put {key} via {len(alive)} live members: "
                            + (put.stdout.strip() or put.stderr.strip()[:200])))
    return checks


def dataplane_checks(state: dict[str, Any], plan: Plan, health: Health) -> list[Check]:
    return [Check(p.kind, p.name, ok, detail) for p, ok, detail in run_probes(probes(state, plan, health))]


def evaluate(state: dict[str, Any], plan: Plan, topo: Topology) -> list[Check]:
    health = Health.of(state)
    snap = collect(state, topo, health)
    return [*bgp_checks(plan, health, snap), *route_checks(plan, health, snap), *etcd_checks(state, plan, health),
            *dataplane_checks(state, plan, health)]


def verify(site: str | Path, *, timeout: float = 90.0, prefix: str | None = None,
           log: Callable[[str], None] | None = None) -> Report:
    t0 = time.monotonic()
    state = st.load(site, prefix)
    plan = compile_site(state["site_dir"]).plan
    topo = derive(plan, state["prefix"], health=st.option(state, "health"))
    while True:
        checks = evaluate(state, plan, topo)
        bad = [c for c in checks if not c.ok]
        if not bad or time.monotonic() - t0 > timeout:
            return Report(checks, time.monotonic() - t0, state.get("failures", []), state.get("drills", []))
        if log:
            log(f"  waiting for convergence: {len(bad)} checks failing ({bad[0].name})")
        time.sleep(POLL)
