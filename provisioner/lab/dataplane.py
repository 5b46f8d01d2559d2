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
from ipaddress import IPv4Address
from typing import Any

from ..plan import Plan
from .hosts import nsenter_argv
from .standin import PORTS

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


def probes(state: dict[str, Any], plan: Plan, health: Any) -> list[Probe]:
    pods = state.get("pods", {})
    live = {name: p for name, p in pods.items() if health.up(p["node"])}
    out: list[Probe] = []
    by_node = {n.hostname: n for n in plan.nodes}
    announcers = {dc: {n.hostname for n in plan.nodes if n.dc == dc and health.announces_anycast(n.hostname)}
                  for dc in plan.dcs}
    api = {dc: {v.name for v in plan.control_plane if v.dc == dc and health.announces_api(v.name)}
           for dc in plan.dcs}
    live_upstreams = {name: u for name, u in state.get("upstreams", {}).items() if health.up(name)}
    anycast_addr = str(next(plan.anycast[0].hosts()))
    unserved_anycast = str(plan.anycast[0].broadcast_address - 1)
    for name, pod in sorted(live.items()):
        node = by_node[pod["node"]]
        others = sorted((n, p) for n, p in pods.items() if p["node"] != pod["node"])
        picks = {}
        for where in ("same rack", "other rack", "other DC"):
            candidates = [(n, p) for n, p in others if _relation(pod, p) == where]
            alive = [(n, p) for n, p in candidates if health.up(p["node"])]
            dead = [(n, p) for n, p in candidates if not health.up(p["node"])]
            if alive:
                target, tp = picks[where] = alive[0]
                out.append(Probe("dataplane", f"pod {name} -> pod {target} ({where}): icmp",
                                 _in_pod(state, name, _ping(tp["address"], FABRIC_DIAMETER + 1)), replied(True)))
                out.append(Probe("dataplane", f"pod {name} -> pod {target} ({where}): tcp",
                                 _in_pod(state, name, _curl(f"http://{tp['address']}:{PORTS['pod']}/")),
                                 answered_by({target}, target)))
            if dead:
                target, tp = dead[0]
                out.append(Probe("drill", f"drill: pod {name} -> pod {target} ({where}) gone",
                                 _in_pod(state, name, _ping(tp["address"])), replied(False)))
        here = announcers.get(node.dc) or set().union(*announcers.values())
        want = "a node of " + (node.dc if announcers.get(node.dc) else "another DC")
        if here:
            out.append(Probe("dataplane", f"pod {name} -> anycast {anycast_addr}",
                             _in_pod(state, name, _curl(f"http://{anycast_addr}:{PORTS['proxy']}/")),
                             answered_by(here, want)))
        cps = api.get(node.dc) or set().union(*api.values())
        if cps:
            out.append(Probe("dataplane", f"pod {name} -> API {plan.api_address}",
                             _in_pod(state, name, _curl(f"https://{plan.api_address}:{PORTS['apiserver']}/")),
                             answered_by(cps, "a control-plane VM of " + (node.dc if api.get(node.dc)
                                                                           else "another DC"))))
        mine = [u for u in live_upstreams.values() if u["dc"] == node.dc] or list(live_upstreams.values())
        for u in mine[:1]:
            out.append(Probe("dataplane", f"pod {name} -> upstream probe {u['probe']} (egress)",
                             _in_pod(state, name, _ping(u["probe"])), replied(True)))
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
        if n.dc in seen or not health.up(n.hostname) or n.hostname not in state["hosts"]:
            continue
        seen.add(n.dc)
        mine = [u for u in live_upstreams.values() if u["dc"] == n.dc] or list(live_upstreams.values())
        for u in mine[:1]:
            out.append(Probe("dataplane", f"node {n.hostname} -> upstream probe {u['probe']} (egress)",
                             nsenter_argv(state, n.hostname, _ping(u["probe"])), replied(True)))
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


def is_lab_address(addr: str) -> bool:
    """Every probe target is inside the lab range (network safety); checked by the unit tests."""
    from .topology import LAB_RANGE

    return IPv4Address(addr) in LAB_RANGE
