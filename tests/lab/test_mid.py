"""The mid-size site in the lab tier: 3 DCs x 4 racks x 10 nodes, 2 spines and 2 upstreams per DC (153 hosts).

What the 12-node lab cannot show: anycast ECMP wider than 2 (10 nodes on a ToR, 4 racks on a spine), two spines
per DC (every rack dual-homed, every route via both), two upstreams per DC, and a DC loss among 12 racks.
One lab for the module with the scale twin's options (docs/lab.md), so they are tested on every change: pods,
health checks and sshd ``sample`` (the first node of each rack; the other nodes announce anycast from a socat
stand-in). Health gating itself is drilled on the small lab (tests/lab/test_lab.py). Timings are printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from provisioner.pipeline import compile_site
from tests.conftest import INVENTORIES
from tests.helpers import run_cli
from tests.lab.conftest import require_lab_prerequisites

MID = INVENTORIES / "mid"
PLAN = compile_site(MID).plan
# Converging 153 hosts on 2 shared cores can take minutes.
TIMEOUT = "300"
TIMINGS: dict[str, float] = {}


def _verify(*extra: str) -> tuple[int, dict[str, Any], float]:
    t0 = time.monotonic()
    rc, out, err = run_cli("lab", "verify", str(MID), "--format", "json", "--timeout", TIMEOUT, *extra)
    assert out, err
    return rc, json.loads(out), time.monotonic() - t0


def _failed(data: dict[str, Any]) -> str:
    """The failed rows in full (pytest would cut a long assertion message)."""
    rows = "\n".join(f"{c['name']}: {c['detail']}" for c in data["checks"] if not c["ok"])
    print(rows)
    return rows


@pytest.fixture(scope="module")
def mid() -> Iterator[dict[str, Any]]:
    require_lab_prerequisites()
    from provisioner.lab.teardown import down
    from provisioner.lab.up import up

    down(MID)  # leftovers of a crashed run
    try:
        t0 = time.monotonic()
        state = up(MID, pods_per_node="sample", health="sample", ssh="sample")
        TIMINGS["up"] = time.monotonic() - t0
        yield state
    finally:
        from provisioner.lab.netns import NEIGH_SAVED, root_links

        saved = json.loads(NEIGH_SAVED.read_text()) if NEIGH_SAVED.exists() else None
        t0 = time.monotonic()
        down(MID)
        TIMINGS["down"] = time.monotonic() - t0
        if saved and not any(link.endswith("-mgmt") for link in root_links()):  # the last lab gives them back
            assert _neighbour_limits() == saved and not NEIGH_SAVED.exists()
        print("\nmid site timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()))


def _neighbour_limits() -> dict[str, int]:
    from provisioner.lab.netns import NEIGH_THRESH

    return {k: int((NEIGH_THRESH / k).read_text()) for k in ("gc_thresh1", "gc_thresh2", "gc_thresh3")}


def test_mid_site_converges_with_wide_ecmp_and_two_spines(mid):
    rc, data, seconds = _verify()
    TIMINGS["verify"] = seconds
    print(f"\nmid up {TIMINGS['up']:.0f}s ({len(mid['hosts'])} hosts, {len(mid['pods'])} pods), "
          f"verify {seconds:.0f}s ({len(data['checks'])} checks)")
    assert rc == 0 and data["ok"], _failed(data)
    # the kernel's one ARP table for all namespaces (1024 entries by default) has room for every host's peers
    assert _neighbour_limits()["gc_thresh3"] >= 16 * len(mid["hosts"])
    checks = {c["name"]: c for c in data["checks"]}
    assert sum(c["kind"] == "bgp" for c in data["checks"]) == len(PLAN.sessions)
    assert len({p["node"] for p in mid["pods"].values()}) == len(PLAN.tors)  # one pod in every rack
    for tor in PLAN.tors:
        assert checks[f"anycast {tor.name}: ECMP over 10 nodes"]["ok"]
        assert len(tor.uplinks) == 2  # dual-homed: one uplink to each spine of the DC
    spines = [s for s in PLAN.spines]
    assert {dc: sum(s.dc == dc for s in spines) for dc in ("dc1", "dc2", "dc3")} == {"dc1": 2, "dc2": 2, "dc3": 2}
    for spine in spines:
        row = checks[f"anycast {spine.name}: ECMP over 4 racks"]
        assert row["ok"] and len(row["detail"].split(" via ")[1].split(", ")) == 4, row
    # and in the kernel of a spine itself: one anycast route with 4 next hops (the DC's ToRs)
    from provisioner.lab.hosts import host_exec

    routes = json.loads(host_exec(MID, "dc1-spine2", ["ip", "-j", "route", "show", str(PLAN.anycast[0])]).stdout)
    assert len({h["gateway"] for r in routes for h in r.get("nexthops", [r])}) == 4, routes
    # every pod reaches pods in its rack, other racks and other DCs, and the outside, over both spines
    dataplane = [c for c in data["checks"] if c["kind"] == "dataplane"]
    for where in ("other rack", "other DC"):  # pods `sample`: one per rack, so no same-rack pair
        assert sum(f"({where}): tcp" in c["name"] for c in dataplane) >= len(mid["pods"]), where
    assert any("(egress)" in c["name"] and "upstream probe" in c["name"] for c in dataplane)


def test_mid_sampled_options_run_what_they_say(mid):
    """--health sample: the first node of each rack runs the health checker, the others a socat stand-in that
    answers anycast with the host's name and is in the ECMP; a service drill on such a node is refused (it would
    withdraw nothing). --ssh sample: sshd runs on every switch and VM and on the first node of each rack only."""
    from provisioner.lab.daemons import running_services
    from provisioner.lab.hosts import host_exec

    nodes = [n for n in PLAN.nodes]
    first = {min(n.hostname for n in nodes if n.rack == rack) for rack in {n.rack for n in nodes}}
    for n in nodes[:20]:
        running = running_services(mid, n.hostname)
        if n.hostname in first:
            assert {"proxy", "bird", "health"} <= set(running), (n.hostname, running)
        else:
            assert set(running) == {"proxy-lite", "bird"}, (n.hostname, running)
    unchecked = next(n.hostname for n in nodes if n.hostname not in first)
    anycast = str(next(PLAN.anycast[0].hosts()))
    out = host_exec(MID, unchecked, ["curl", "-s", "-m", "5", f"http://{anycast}/"])
    assert out.stdout.strip() == unchecked, out
    rc, _, err = run_cli("lab", "fail", str(MID), "service", unchecked)
    assert rc == 2 and "no health checks" in err, err
    rc, _, err = run_cli("lab", "fail", str(MID), "host", "dc1-r1-n1O")  # a typo: letter O for zero
    assert rc == 2 and "no lab host" in err, err
    from provisioner.lab import state as st

    assert st.load(MID)["failures"] == [], "a refused drill records nothing"
    from provisioner.lab.netns import netns_list

    namespaces = sorted(n for n in netns_list() if n.startswith(mid["prefix"] + "-"))
    rc, _, err = run_cli("lab", "up", str(MID))  # typed twice at 3 a.m.: refused, and the running lab is left alone
    assert rc == 2 and "already up" in err, err
    assert sorted(n for n in netns_list() if n.startswith(mid["prefix"] + "-")) == namespaces
    assert st.load(MID)["status"] == "up"
    sshd = {h for h, v in mid["hosts"].items() if v["ssh"]}
    assert sshd == {h for h, v in mid["hosts"].items() if v["role"] != "node"} | first
    from provisioner.lab.netns import comm, netns_pids

    for host in (unchecked, min(first), "dc1-spine1"):
        has_sshd = any(comm(p) == "sshd" for p in netns_pids(mid["hosts"][host]["ns"]))
        assert has_sshd == (host in sshd), host


def test_mid_dc_loss_then_restore(mid):
    t0 = time.monotonic()
    rc, _, err = run_cli("lab", "fail", str(MID), "dc", "dc2")
    assert rc == 0, err
    rc, data, seconds = _verify()
    TIMINGS["fail dc dc2 -> verify"] = time.monotonic() - t0
    print(f"\nfail dc dc2 -> every drill row as expected in {TIMINGS['fail dc dc2 -> verify']:.0f}s "
          f"(verify {seconds:.0f}s)")
    assert rc == 0 and data["ok"], _failed(data)
    checks = {c["name"]: c for c in data["checks"]}
    for cluster in ("etcd", "etcd-events"):
        assert checks[f"drill: etcd {cluster} accepts writes"]["ok"]
    for dc in ("dc1", "dc3"):
        for spine in (s.name for s in PLAN.spines if s.dc == dc):
            assert checks[f"drill: dc2 paths gone from {spine}"]["ok"]
            assert checks[f"anycast {spine}: ECMP over 4 racks"]["ok"]
        assert checks[f"anycast stays in {dc}"]["ok"]
    dc2_sessions = [s for s in PLAN.sessions if "dc2-" in s.a.host or "dc2-" in s.b.host]
    assert sum(c["name"].startswith("drill: bgp ") for c in data["checks"]) >= len(dc2_sessions)
    assert not any("dc2-r" in name and c["kind"] != "drill" for name, c in checks.items())

    t0 = time.monotonic()
    rc, _, err = run_cli("lab", "restore", str(MID))
    assert rc == 0, err
    rc, data, seconds = _verify()
    TIMINGS["restore -> verify"] = time.monotonic() - t0
    print(f"restore -> verify passes in {TIMINGS['restore -> verify']:.0f}s")
    assert rc == 0 and data["ok"], _failed(data)
    assert not any(c["kind"] == "drill" for c in data["checks"])
