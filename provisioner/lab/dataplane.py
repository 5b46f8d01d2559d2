"""Data-plane checks of `lab verify`: what packets do, sent from the lab's pods (and nodes) with ping and curl.

Every expectation comes from the Plan and the failures in effect (:class:`Health`):

- pod -> pod in the same rack, another rack of its DC and another DC: ICMP with the TTL set to the fabric's
  diameter (a longer path, such as a loop, fails) and a TCP connect answered by the target pod's name;
- pod -> an anycast service address: answered by a node of the pod's own DC while that DC has a healthy
  announcer, by another DC otherwise;
- pod -> the API address: answered by a control-plane VM of the pod's DC while it is ready, another DC's
  otherwise;
- pod and node -> the probe address of an upstream (egress) and back;
- no loops: an anycast address nothing serves and an unused address in a remote pod /24 are answered with
  "unreachable" or dropped, never "time to live exceeded".

A target that a drill takes away becomes a ``drill`` row that expects no answer.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..plan import Plan
from .hosts import nsenter_argv
from .standin import PORTS
from .topology import OUTSIDE

# Forwarding hops on the longest designed path, pod to pod across DCs: node, ToR, spine, spine, ToR, node. A
# packet sent with this TTL + 1 arrives; one caught in a loop does not.
FABRIC_DIAMETER = 6
PROBE_TIMEOUT = 2


@dataclass(frozen=True)
class Probe:
    kind: str  # dataplane or drill
    name: str
    argv: list[str]
    judge: Callable[[subprocess.CompletedProcess], tuple[bool, str]]


def _in_pod(state: dict[str, Any], pod: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", state["pods"][pod]["netns"], *argv]


def _ping(addr: str, ttl: int = 64) -> list[str]:
    return ["ping", "-n", "-c", "1", "-W", str(PROBE_TIMEOUT), "-t", str(ttl), addr]


def _curl(url: str) -> list[str]:
    return ["curl", "-sk", "-m", str(PROBE_TIMEOUT), "--connect-timeout", str(PROBE_TIMEOUT), url]


def replied(expect: bool) -> Callable[[subprocess.CompletedProcess], tuple[bool, str]]:
    def judge(p: subprocess.CompletedProcess) -> tuple[bool, str]:
        got = p.returncode == 0
        line = _ping_summary(p)
        return got == expect, line

    return judge


def never_loops(p: subprocess.CompletedProcess) -> tuple[bool, str]:
    text = p.stdout + p.stderr
    if "Time to live exceeded" in text:
        return False, "time to live exceeded: a forwarding loop"
    if p.returncode == 0:
        return False, "answered, but nothing should serve it"
    return True, "unreachable" if "Unreachable" in text else "dropped (no answer)"


def answered_by(allowed: set[str], what: str) -> Callable[[subprocess.CompletedProcess], tuple[bool, str]]:
    def judge(p: subprocess.CompletedProcess) -> tuple[bool, str]:
        who = p.stdout.strip()
        if p.returncode != 0 or not who:
            return False, f"no answer (curl exit {p.returncode}); want {what}"
        return who in allowed, f"answered by {who}" + ("" if who in allowed else f"; want {what}")

    return judge


def _ping_summary(p: subprocess.CompletedProcess) -> str:
    for line in (p.stdout + p.stderr).splitlines():
        if "packets transmitted" in line:
            return line.strip()
        if "Unreachable" in line or "exceeded" in line:
            return line.strip()
    return f"exit {p.returncode}"


def _relation(pod: dict[str, Any], other: dict[str, Any]) -> str:
    if other["dc"] != pod["dc"]:
        return "other DC"
    return "same rack" if other["rack"] == pod["rack"] else "other rack"


class Reach:
    """Who can reach whom with the failures in effect: a server reaches another when both are up with their
    ToR sessions up, and their ToRs are the same or joined through live uplinks and spines."""

    def __init__(self, plan: Plan, health: Any):
        self.plan, self.health = plan, health
        self.session_of = {s.a.host: s for s in plan.sessions if s.kind in ("node-tor", "vm-tor")}
        self.tor_of = {n.hostname: n.tor for n in plan.nodes} | {v.name: v.tor for v in plan.vms}
        adj: dict[str, set[str]] = {s.name: set() for s in plan.spines if health.up(s.name)}
        for s in plan.sessions:
            if s.kind == "spine-spine" and health.session_up(s):
                adj[s.a.host].add(s.b.host)
                adj[s.b.host].add(s.a.host)
        self.spines_reach: dict[str, set[str]] = {}
        for start in adj:
            seen, todo = {start}, [start]
            while todo:
                for nxt in adj[todo.pop()] - seen:
                    seen.add(nxt)
                    todo.append(nxt)
            self.spines_reach[start] = seen

    def spines_of(self, tor: str) -> set[str]:
        """Spines a ToR reaches over its live uplinks, and every spine those reach."""
        if not self.health.up(tor):
            return set()
        direct = {u.b.host for u in self.plan.tor_by_name[tor].uplinks if self.health.session_up(u)}
        return set().union(*(self.spines_reach.get(s, set()) for s in direct)) if direct else set()

    def server_up(self, host: str) -> bool:
        s = self.session_of.get(host)
        if s is None:  # a VM without BGP: up, its ToR up, the link between them not cut
            tor = self.tor_of[host]
            return self.health.up(host) and self.health.up(tor) and frozenset((host, tor)) not in \
                self.health.cut_links
        return self.health.session_up(s)

    def servers(self, a: str, b: str, *, via_default: bool = False) -> bool:
        """``a`` reaches ``b``. Servers learn only the default and the pod pools from their ToR, so anything but a
        pod (``via_default``) needs the ToR to have a default, that is a live uplink, even inside the rack."""
        if not (self.server_up(a) and self.server_up(b)):
            return False
        ta, tb = self.tor_of[a], self.tor_of[b]
        if via_default and not self.spines_of(ta):
            return False
        return ta == tb or bool(self.spines_of(ta) & self.spines_of(tb))

    def upstream(self, server: str, upstream: str) -> bool:
        """``server`` reaches the probe address of ``upstream`` through its default route."""
        if not (self.server_up(server) and self.health.up(upstream)):
            return False
        spines = {s.a.host for s in self.plan.sessions if s.kind == "spine-upstream" and s.b.host == upstream
                  and self.health.session_up(s)}
        return bool(spines & self.spines_of(self.tor_of[server]))


def probes(state: dict[str, Any], plan: Plan, health: Any) -> list[Probe]:
    pods = state.get("pods", {})
    reach = Reach(plan, health)
    live = {name: p for name, p in pods.items() if reach.server_up(p["node"])}
    out: list[Probe] = []
    by_node = {n.hostname: n for n in plan.nodes}
    upstreams = state.get("upstreams", {})
    anycast_addr = str(next(plan.anycast[0].hosts()))
    unserved_anycast = str(plan.anycast[0].broadcast_address - 1)
    for name, pod in sorted(live.items()):
        node = by_node[pod["node"]]
        others = sorted((n, p) for n, p in pods.items() if p["node"] != pod["node"])
        picks = {}
        for where in ("same rack", "other rack", "other DC"):
            candidates = [(n, p) for n, p in others if _relation(pod, p) == where]
            alive = [(n, p) for n, p in candidates if reach.servers(pod["node"], p["node"])]
            dead = [(n, p) for n, p in candidates if not reach.servers(pod["node"], p["node"])]
            if alive:
                target, tp = picks[where] = alive[0]
                out.append(Probe("dataplane", f"pod {name} -> pod {target} ({where}): icmp",
                                 _in_pod(state, name, _ping(tp["address"], FABRIC_DIAMETER + 1)), replied(True)))
                out.append(Probe("dataplane", f"pod {name} -> pod {target} ({where}): tcp",
                                 _in_pod(state, name, _curl(f"http://{tp['address']}:{PORTS['pod']}/")),
                                 answered_by({target}, target)))
            if dead:
                target, tp = dead[0]
                out.append(Probe("drill", f"drill: pod {name} -> pod {target} ({where}) unreachable",
                                 _in_pod(state, name, _ping(tp["address"])), replied(False)))
        out += _service_probes(state, plan, health, reach, name, node, anycast_addr)
        out += _egress_probes(state, reach, f"pod {name}", pod["node"], node.dc, upstreams,
                              partial(_in_pod, state, name))
        out.append(Probe("dataplane", f"pod {name} -> unserved anycast {unserved_anycast}: no loop",
                         _in_pod(state, name, _ping(unserved_anycast)), never_loops))
        if "other DC" in picks:
            target_net = by_node[picks["other DC"][1]["node"]].pod_cidr
            unused = str(target_net.network_address + 200)
            out.append(Probe("dataplane", f"pod {name} -> unused {unused} in a remote pod /24: no loop",
                             _in_pod(state, name, _ping(unused)), never_loops))
    # Nodes reach the outside too (image pulls), from their own address: the first live node of each DC.
    seen: set[str] = set()
    for n in plan.nodes:
        if n.dc in seen or not reach.server_up(n.hostname) or n.hostname not in state["hosts"]:
            continue
        seen.add(n.dc)
        out += _egress_probes(state, reach, f"node {n.hostname}", n.hostname, n.dc, upstreams,
                              partial(nsenter_argv, state, n.hostname))
    return out


def _service_probes(state: dict[str, Any], plan: Plan, health: Any, reach: Reach, name: str, node: Any,
                    anycast_addr: str) -> list[Probe]:
    """Anycast and the API from a pod: answered inside its DC while the DC has a reachable healthy server."""
    out = []
    servers = [n for n in plan.nodes if health.announces_anycast(n.hostname) and
               (n.hostname == node.hostname or reach.servers(node.hostname, n.hostname, via_default=True))]
    here = {n.hostname for n in servers if n.dc == node.dc} or {n.hostname for n in servers}
    if here:
        want = "a node of " + (node.dc if any(n.dc == node.dc for n in servers) else "another DC")
        out.append(Probe("dataplane", f"pod {name} -> anycast {anycast_addr}",
                         _in_pod(state, name, _curl(f"http://{anycast_addr}:{PORTS['proxy']}/")),
                         answered_by(here, want)))
    cps = [v for v in plan.control_plane
           if health.announces_api(v.name) and reach.servers(node.hostname, v.name, via_default=True)]
    mine = {v.name for v in cps if v.dc == node.dc} or {v.name for v in cps}
    if mine:
        want = "a control-plane VM of " + (node.dc if any(v.dc == node.dc for v in cps) else "another DC")
        out.append(Probe("dataplane", f"pod {name} -> API {plan.api_address}",
                         _in_pod(state, name, _curl(f"https://{plan.api_address}:{PORTS['apiserver']}/")),
                         answered_by(mine, want)))
    return out


def _egress_probes(state: dict[str, Any], reach: Reach, who: str, server: str, dc: str,
                   upstreams: dict[str, Any], wrap: Callable[[list[str]], list[str]]) -> list[Probe]:
    """The DC's own upstream probe while it is reachable; the address every upstream holds (the outside)
    whenever any upstream is reachable; a drill row when none is."""
    out = []
    own = [(u, v) for u, v in sorted(upstreams.items()) if v["dc"] == dc and reach.upstream(server, u)]
    for _u, v in own[:1]:
        out.append(Probe("dataplane", f"{who} -> upstream probe {v['probe']} (egress)",
                         wrap(_ping(v["probe"])), replied(True)))
    anywhere = [u for u in upstreams if reach.upstream(server, u)]
    kind, name = ("dataplane", f"{who} -> the outside {OUTSIDE} (egress)") if anywhere else \
        ("drill", f"drill: {who} -> the outside {OUTSIDE}: no way out")
    out.append(Probe(kind, name, wrap(_ping(OUTSIDE)), replied(bool(anywhere))))
    return out


def run_probes(probes_: list[Probe], workers: int = 8) -> list[tuple[Probe, bool, str]]:
    def one(p: Probe) -> tuple[Probe, bool, str]:
        try:
            proc = subprocess.run(p.argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(p.argv, 124, "", "timeout")
        ok, detail = p.judge(proc)
        return p, ok, detail

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, probes_))
