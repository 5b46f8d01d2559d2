"""`lab fail` and `lab restore`: failure drills, recorded in state.json so verify adapts its expectations.

``dc NAME`` and ``host NAME`` are a power cut: the hosts' daemons (FRR, BIRD, etcd and sshd) are stopped and
their ends of every data link are set down, so neighbours lose carrier as with a dead box. Stopping daemons
alone is not a failure a fabric with BGP graceful restart reacts to quickly: the peers keep the stale routes
for the restart time (120 s), which is what graceful restart is for. ``link A B`` sets both ends of the link
between A and B down. ``restore`` undoes every recorded failure in reverse order: links up, then the stopped
services (and sshd) started again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..pipeline import compile_site
from . import state as st
from .daemons import kill_services, running_services, svc
from .hosts import start_sshd, stop_sshd
from .netns import LabError, run
from .topology import derive


def describe(entry: dict[str, Any]) -> str:
    if entry["kind"] == "link":
        return f"link {' '.join(entry['target'])}: both ends set down ({', '.join(entry['interfaces'])})"
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
            raise LabError("lab fail SITE link A B: give the two hosts at the ends of the link")
        plan = compile_site(state["site_dir"]).plan
        link = derive(plan, state["prefix"]).link_between(*names)
        ends = [[link.a.host, link.a.ifname], [link.b.host, link.b.ifname]]
        _set_link(state, ends, "down")
        entry = {"kind": "link", "target": list(names), "ends": ends,
                 "interfaces": [f"{h}:{i}" for h, i in ends]}
    else:
        if len(names) != 1:
            raise LabError(f"lab fail SITE {kind} NAME: give exactly one name")
        (name,) = names
        if kind == "dc":
            targets = sorted(h for h, v in hosts.items() if v["dc"] == name)
            if not targets:
                dcs = ", ".join(sorted({v["dc"] for v in hosts.values()}))
                raise LabError(f"no DC {name!r} in the lab (DCs: {dcs})")
        elif kind == "host":
            if name not in hosts:
                raise LabError(f"no lab host {name!r}")
            targets = [name]
        else:
            raise LabError(f"unknown failure kind {kind!r}")
        topo = derive(compile_site(state["site_dir"]).plan, state["prefix"])
        ends = [[e.host, e.ifname] for h in targets for li in topo.links_of(h) for e in (li.a, li.b) if e.host == h]

        def power_off(host: str) -> list[str]:
            stopped = kill_services(state, host)
            stop_sshd(state, host)
            return stopped

        with ThreadPoolExecutor(max_workers=8) as pool:
            stopped = list(pool.map(power_off, targets))
        _set_link(state, ends, "down")
        entry = {"kind": kind, "target": [name], "hosts": dict(zip(targets, stopped, strict=True)), "ends": ends}
    state.setdefault("failures", []).append(entry)
    st.save(state)
    return entry


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
        if entry["kind"] != "link":
            for host in entry["hosts"]:
                start_sshd(state, host)
    starts = [(h, s) for e in undone if e["kind"] != "link" for h, services in e["hosts"].items() for s in services]
    # FRR 8.4.4 zebra loses ECMP members of kernel nexthop groups when an interface goes down and up (zebra
    # shows two next hops, the kernel keeps one): restart FRR on the switches at the ends of a restored link.
    flapped = {h for e in undone if e["kind"] == "link" for h, _ in e["ends"]
               if "frr" in state["hosts"][h]["daemons"] and "frr" in running_services(state, h)}
    restarts = [(h, "frr") for h in sorted(flapped)]

    def start(item: tuple[str, str, str]) -> str | None:
        out = svc(state, item[0], item[1], item[2], timeout=90)
        return None if out.returncode == 0 else f"{item[0]}: {item[1]}: {(out.stderr or out.stdout).strip()}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [(h, s, "start") for h, s in starts] + [(h, s, "restart") for h, s in restarts]
        errors = [e for e in pool.map(start, jobs) if e]
    state["failures"] = []
    st.save(state)
    if errors:
        raise LabError("restore could not start:\n  " + "\n  ".join(errors))
    return list(reversed(undone))
