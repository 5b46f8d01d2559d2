"""`lab fail` and `lab restore`: failure drills, recorded in state.json so verify adapts its expectations.

``dc NAME`` and ``host NAME`` are a power cut: the hosts' daemons (FRR, BIRD, etcd and sshd) are stopped and
their ends of every data link are set down, so neighbours lose carrier as with a dead box. Stopping daemons
alone is not a failure a fabric with BGP graceful restart reacts to quickly: the peers keep the stale routes
for the restart time (120 s), which is what graceful restart is for. ``link A B`` sets both ends of the link
between A and B down. ``restore`` undoes every recorded failure in reverse order: links up, then the stopped
services (and sshd) started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..pipeline import compile_site
from . import state as st
from .daemons import kill_hosts, svc
from .hosts import start_sshd, stop_sshd
from .netns import LabError, LabUsageError, run
from .topology import derive

# The service each kind of server serves, whose health its announcements follow.
SERVED = {"node": "proxy", "control_plane": "apiserver"}
# The routing daemon a crash drill kills, and the service the lab's supervisor restarts.
ROUTING = {"node": ("bird", "bird"), "control_plane": ("bird", "bird"), "tor": ("bgpd", "frr"),
           "spine": ("bgpd", "frr"), "upstream": ("bgpd", "frr")}
SUPERVISOR_DELAY = 1.0  # systemd's Restart=on-failure with RestartSec=1s


def describe(entry: dict[str, Any]) -> str:
    if entry["kind"] == "link":
        return f"link {' '.join(entry['target'])}: both ends set down ({', '.join(entry['interfaces'])})"
    if entry["kind"] == "service":
        return (f"service {' '.join(entry['target'])}: stopped "
                + ", ".join(f"{s} on {h}" for h, v in entry["hosts"].items() for s in v))
    if entry["kind"] == "crash":
        return (f"crash {' '.join(entry['target'])}: kill -9 of {entry['process']}, restarted by the supervisor "
                f"after {SUPERVISOR_DELAY:.0f}s")
    if entry["kind"] == "restart":
        return f"restart {' '.join(entry['target'])}: {entry['process']} stopped and started (a planned restart)"
    stopped = sum(len(v) for v in entry["hosts"].values())
    return (f"{entry['kind']} {' '.join(entry['target'])}: {stopped} services and sshd stopped on "
            f"{len(entry['hosts'])} hosts, {len(entry['ends'])} link ends down")


def _set_link(state: dict[str, Any], ends: list[list[str]], updown: str) -> None:
    for host, ifname in ends:
        run(["ip", "-n", state["hosts"][host]["ns"], "link", "set", ifname, updown])


def fail(site: str | Path, kind: str, names: tuple[str, ...] | list[str], *, prefix: str | None = None
         ) -> dict[str, Any]:
    state = st.load(site, prefix)
    hosts = state["hosts"]
    if kind == "link":
        if len(names) != 2:
            raise LabUsageError("lab fail SITE link A B: give the two hosts at the ends of the link")
        plan = compile_site(state["site_dir"]).plan
        link = derive(plan, state["prefix"]).link_between(*names)
        ends = [[link.a.host, link.a.ifname], [link.b.host, link.b.ifname]]
        _set_link(state, ends, "down")
        entry = {"kind": "link", "target": list(names), "ends": ends,
                 "interfaces": [f"{h}:{i}" for h, i in ends]}
    elif kind in ("service", "crash", "restart"):
        if len(names) != 1:
            raise LabUsageError(f"lab fail SITE {kind} NAME: give exactly one name")
        if kind == "service":
            entry = _service_failure(state, names[0])
        else:
            return _crash(state, names[0], hard=kind == "crash")  # restarted at once: nothing stays failed
    else:
        if len(names) != 1:
            raise LabUsageError(f"lab fail SITE {kind} NAME: give exactly one name")
        (name,) = names
        if kind == "dc":
            targets = sorted(h for h, v in hosts.items() if v["dc"] == name)
            if not targets:
                dcs = ", ".join(sorted({v["dc"] for v in hosts.values()}))
                raise LabUsageError(f"no DC {name!r} in the lab (DCs: {dcs})")
        elif kind == "host":
            if name not in hosts:
                raise LabUsageError(f"no lab host {name!r}")
            targets = [name]
        else:
            raise LabUsageError(f"unknown failure kind {kind!r}")
        topo = derive(compile_site(state["site_dir"]).plan, state["prefix"])
        ends = [[e.host, e.ifname] for h in targets for li in topo.links_of(h) for e in (li.a, li.b) if e.host == h]

        # Carrier goes first, as when power is cut; the daemons die after (their peers must not get a clean
        # shutdown they would not get from a dead box).
        _set_link(state, ends, "down")
        stopped = kill_hosts(state, targets)
        for host in targets:
            stop_sshd(state, host)
        entry = {"kind": kind, "target": [name], "hosts": {h: stopped[h] for h in targets}, "ends": ends}
    state.setdefault("failures", []).append(entry)
    st.save(state)
    return entry


def _service_failure(state: dict[str, Any], name: str) -> dict[str, Any]:
    """Stop the served service (kube-proxy stand-in on a node, apiserver stand-in on a control-plane VM) of one
    host, or of every node of a DC: its health check fails and its announcements are withdrawn."""
    hosts = state["hosts"]
    if name in hosts:
        targets = [name]
    else:
        targets = sorted(h for h, v in hosts.items() if v["dc"] == name and v["role"] == "node")
    targets = [h for h in targets if hosts[h]["role"] in SERVED]
    if not targets:
        raise LabUsageError(f"{name!r} is neither a node, a control-plane VM nor a DC of the lab")
    unchecked = [h for h in targets if "health" not in hosts[h]["daemons"]]
    if unchecked:  # stopping its stand-in would not withdraw anything: the drill would prove nothing
        named = ", ".join(unchecked[:5]) + (" ..." if len(unchecked) > 5 else "")
        raise LabUsageError(f"{named}: no health checks in this lab (lab up --health {st.option(state, 'health')}); "
                            "a service failure needs them")
    stopped: dict[str, list[str]] = {}
    for h in targets:
        service = SERVED[hosts[h]["role"]]
        out = svc(state, h, service, "stop")
        if out.returncode != 0:
            raise LabError(f"{h}: `svc {service} stop` failed: {(out.stderr or out.stdout).strip()}")
        stopped[h] = [service]
    return {"kind": "service", "target": [name], "hosts": stopped, "ends": []}


def _crash(state: dict[str, Any], host: str, *, hard: bool = True) -> dict[str, Any]:
    """kill -9 of the host's routing daemon, which the supervisor starts again after SUPERVISOR_DELAY; or, not
    ``hard``, a planned restart of its service (BIRD, or FRR on a switch: a clean stop, then a start)."""
    import time

    from .netns import comm, netns_pids

    if host not in state["hosts"]:
        raise LabUsageError(f"no lab host {host!r}")
    role = state["hosts"][host]["role"]
    if role not in ROUTING:
        raise LabUsageError(f"{host} ({role}) runs no routing daemon")
    process, service = ROUTING[role]
    if not hard:
        out = svc(state, host, service, "restart", timeout=90)
        if out.returncode != 0:
            raise LabError(f"{host}: `svc {service} restart` failed: {(out.stderr or out.stdout).strip()}")
        return {"kind": "restart", "target": [host], "process": service, "hosts": {host: []}, "ends": []}
    pids = [p for p in netns_pids(state["hosts"][host]["ns"]) if comm(p) == process]
    if not pids:
        raise LabError(f"{host}: {process} is not running")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(SUPERVISOR_DELAY)
    out = svc(state, host, service, "restart" if service == "frr" else "start", timeout=90)
    if out.returncode != 0:
        raise LabError(f"{host}: the supervisor could not start {service}: {(out.stderr or out.stdout).strip()}")
    return {"kind": "crash", "target": [host], "process": process, "hosts": {host: []}, "ends": []}


def restore(site: str | Path, *, prefix: str | None = None) -> list[dict[str, Any]]:
    state = st.load(site, prefix)
    undone = list(reversed(state.get("failures", [])))
    for entry in undone:
        _set_link(state, entry.get("ends", []), "up")
    # a device set down loses its routes: put the static ones (VM default gateway) back
    topo = derive(compile_site(state["site_dir"]).plan, state["prefix"])
    touched = {h for e in undone for h, _ in e.get("ends", [])}
    for h in sorted(touched):
        for r in topo.host(h).routes:
            run(["ip", "-n", state["hosts"][h]["ns"], "route", "replace", str(r.dst), "via", str(r.via)])
    for entry in undone:
        if entry["kind"] not in ("link", "service"):
            for host in entry["hosts"]:
                if state["hosts"][host].get("ssh", True):
                    start_sshd(state, host)
    # No FRR restart after a restored link: the switch configs turn kernel nexthop groups off (FRR 8.4's zebra
    # lost ECMP members of a kernel nexthop group when an interface went down and up; docs/network.md).
    starts = [(h, s) for e in undone if e["kind"] != "link" for h, services in e["hosts"].items() for s in services]

    def start(item: tuple[str, str, str]) -> str | None:
        out = svc(state, item[0], item[1], item[2], timeout=90)
        return None if out.returncode == 0 else f"{item[0]}: {item[1]}: {(out.stderr or out.stdout).strip()}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [(h, s, "start") for h, s in starts]
        errors = [e for e in pool.map(start, jobs) if e]
    state["failures"] = []
    st.save(state)
    if errors:
        raise LabError("restore could not start:\n  " + "\n  ".join(errors))
    return list(reversed(undone))
