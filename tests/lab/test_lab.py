"""The lab tier end to end: one lab for the module. up -> verify -> rogue announcement filtered -> wrong ASN
reported -> fail dc dc2 drill -> restore -> verify -> down leaves nothing behind."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time

import pytest

from provisioner.pipeline import compile_site
from tests.conftest import LAB
from tests.helpers import wait_for
from tests.lab.conftest import LAB_COMMS, processes_in, ps_snapshot, ssh_argv

PLAN = compile_site(LAB).plan


def test_up_verifies_and_is_fast(lab):
    report = lab.verify()
    assert report.ok, "\n".join(f"{c.name}: {c.detail}" for c in report.failed)
    kinds = {c.kind for c in report.checks}
    assert {"bgp", "route", "anycast", "api", "etcd", "dataplane"} <= kinds
    assert sum(c.kind == "bgp" for c in report.checks) == len(PLAN.sessions)
    assert lab.up_seconds < 60, f"lab up took {lab.up_seconds:.1f}s"


def test_pods_are_wired_by_the_real_cni_plugins(lab):
    """One pod per node, made like a runtime makes it: br0, its .254 and forwarding come from the bridge plugin."""
    state = lab.state
    nodes = {n.hostname: n for n in PLAN.nodes}
    assert {p["node"] for p in state["pods"].values()} == set(nodes)
    for name, pod in state["pods"].items():
        node = nodes[pod["node"]]
        assert set(pod) >= {"node", "address", "netns"} and pod["netns"].startswith(f"{lab.prefix}-")
        assert ipaddress.ip_address(pod["address"]) in node.pod_cidr, (name, pod)
        br0 = lab.exec(node.hostname, ["ip", "-4", "-o", "addr", "show", "dev", "br0"]).stdout
        assert f"{node.gateway}/24" in br0, (node.hostname, br0)
        assert lab.exec(node.hostname, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
        route = subprocess.run(["ip", "-n", pod["netns"], "-4", "route", "show", "default"], capture_output=True,
                               text=True).stdout
        assert f"via {node.gateway} dev eth0" in route, (name, route)
        leases = lab.exec(node.hostname, ["ls", "/var/lib/cni/networks/pods"]).stdout.split()
        assert pod["address"] in leases, (name, leases)


def test_data_plane_reaches_pods_services_api_and_the_outside_without_loops(lab):
    rc, out, _ = lab.cli("verify", "--format", "json")
    rows = [c for c in json.loads(out)["checks"] if c["kind"] == "dataplane"]
    assert rc == 0, [c for c in json.loads(out)["checks"] if not c["ok"]]
    by_pod: dict[str, list[dict]] = {}
    for c in rows:
        if c["name"].startswith("pod "):
            by_pod.setdefault(c["name"].split()[1], []).append(c)
    assert len(by_pod) == len(PLAN.nodes)
    dc_of = {n.hostname: n.dc for n in PLAN.nodes} | {v.name: v.dc for v in PLAN.vms}
    for pod, checks in by_pod.items():
        names = " | ".join(c["name"] for c in checks)
        for where in ("same rack", "other rack", "other DC"):
            assert f"({where}): icmp" in names and f"({where}): tcp" in names, (pod, where)
        node_dc = lab.state["pods"][pod]["dc"]
        anycast = next(c for c in checks if "-> anycast" in c["name"])
        assert dc_of[anycast["detail"].split()[-1]] == node_dc, anycast  # answered inside the pod's DC
        api = next(c for c in checks if "-> API" in c["name"])
        assert dc_of[api["detail"].split()[-1]] == node_dc, api
        assert any("(egress)" in c["name"] for c in checks)
        loops = [c for c in checks if "no loop" in c["name"]]
        assert len(loops) == 2 and all("exceeded" not in c["detail"] for c in loops), loops
    assert any(c["name"].startswith("node ") and "(egress)" in c["name"] for c in json.loads(out)["checks"])


def test_a_loop_would_be_caught(lab):
    """The no-loop row can fail: with the rack's unreachable routes for the anycast range gone, a packet to an
    unserved anycast address bounces between the nodes and their ToR until its TTL runs out."""
    rack = [n for n in PLAN.nodes if n.rack == PLAN.nodes[0].rack]
    pod = next(p for p in lab.state["pods"].values() if p["node"] == rack[0].hostname)
    target = str(PLAN.anycast[0].broadcast_address - 1)
    rng = str(PLAN.anycast[0])
    try:
        for n in rack:
            lab.exec(n.hostname, ["ip", "route", "del", "unreachable", rng, "metric", "4242"])
        out = subprocess.run(["ip", "netns", "exec", pod["netns"], "ping", "-n", "-c", "1", "-W", "2", target],
                             capture_output=True, text=True)
        assert "Time to live exceeded" in out.stdout, out.stdout
    finally:
        for n in rack:
            lab.exec(n.hostname, ["ip", "route", "replace", "unreachable", rng, "metric", "4242", "proto", "bird"])


def test_lab_is_contained(lab):
    """Every lab namespace routes only 198.18.0.0/15 and its management /20; no default via management."""
    state = lab.state
    namespaces = [(name, host["ns"]) for name, host in state["hosts"].items()]
    namespaces += [(name, pod["netns"]) for name, pod in state["pods"].items()]
    assert len(state["pods"]) == len(PLAN.nodes)
    for name, ns in namespaces:
        out = subprocess.run(["ip", "-n", ns, "-j", "-4", "route", "show", "table", "all"],
                             capture_output=True, text=True, check=True).stdout
        for r in json.loads(out):
            dst = r.get("dst", "")
            if r.get("type") in ("local", "broadcast") or dst.startswith("127.") or r.get("dev") == "lo":
                continue
            assert r.get("dev") != "mgmt0" or dst == state["mgmt"]["network"], f"{name}: {r}"
            if dst == "default":  # the fabric's default (egress) leads to a lab upstream, never out of the lab
                gateways = [r.get("gateway", "")] + [h.get("gateway", "") for h in r.get("nexthops", [])]
                assert r.get("dev") != "mgmt0" and any(g.startswith(("198.18.", "198.19.")) for g in gateways), \
                    f"{name}: {r}"


def test_ssh_with_strict_host_keys_lands_in_the_host(lab):
    node = PLAN.nodes[0]
    out = subprocess.run(ssh_argv(lab, node.hostname, "hostname; grep -c ^processor /proc/cpuinfo; "
                                  "grep MemTotal /proc/meminfo; cat /etc/bird/bird.conf | head -1"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == node.hostname
    assert int(lines[1]) == node.hardware.cores
    assert str(node.hardware.memory_gib * 1024 * 1024) in lines[2]
    assert node.hostname in lines[3]


def test_rogue_node_announcing_another_nodes_prefix_is_filtered(lab):
    tor = PLAN.tors[0]
    rogue, victim = (s for s in tor.clients if s.kind == "node-tor")
    rogue_pod, victim_pod = rogue.a_announces[0], victim.a_announces[0]
    conf = lab.root(rogue.a.host) / "etc/bird/bird.conf"
    original = conf.read_text()
    bad = original.replace("return net = POD || healthy_anycast();",
                           f"return net = POD || net = {victim_pod} || healthy_anycast();", 1)
    bad = bad.replace(f"route {rogue_pod} unreachable;",
                      f"route {rogue_pod} unreachable;\n  route {victim_pod} unreachable;")
    assert bad.count(str(victim_pod)) == 2
    try:
        conf.write_text(bad)
        assert lab.exec(rogue.a.host, ["birdc", "configure"]).returncode == 0
        exported = wait_for(lambda: str(victim_pod) in lab.exec(rogue.a.host, ["birdc", "show", "route", "export",
                                                                            "tor"]).stdout, 30)
        assert exported, "the rogue node does not even announce the victim's prefix"
        time.sleep(3)  # a few keepalives: the update has reached the ToR
        paths = json.loads(lab.exec(tor.name, ["vtysh", "-c", f"show bgp ipv4 unicast {victim_pod} json"]).stdout)
        peers = {p.get("peer", {}).get("peerId") for p in paths.get("paths", [])}
        assert peers == {str(victim.a.address)}, paths
        routes = json.loads(lab.exec(tor.name, ["ip", "-j", "route", "show", str(victim_pod)]).stdout)
        assert [r.get("gateway") for r in routes] == [str(victim.a.address)]
        routes = json.loads(lab.exec(tor.name, ["ip", "-j", "route", "show", str(rogue_pod)]).stdout)
        assert [r.get("gateway") for r in routes] == [str(rogue.a.address)]
    finally:
        conf.write_text(original)
        lab.exec(rogue.a.host, ["birdc", "configure"])


def test_wrong_asn_stays_down_and_verify_names_the_session(lab):
    node = PLAN.nodes[-1]
    conf = lab.root(node.hostname) / "etc/bird/bird.conf"
    original = conf.read_text()
    bad = re.sub(rf"local {node.address} as \d+;", f"local {node.address} as 64999;", original)
    assert bad != original
    try:
        conf.write_text(bad)
        assert lab.exec(node.hostname, ["birdc", "configure"]).returncode == 0
        lab.exec(node.hostname, ["birdc", "restart", "tor"])
        rc, out, _ = lab.cli("verify", "--timeout", "15", "--format", "json")
        assert rc == 1
        failed = [c["name"] for c in json.loads(out)["checks"] if not c["ok"]]
        assert f"bgp {node.hostname} ~ {node.tor}" in failed, failed
        summary = json.loads(lab.exec(node.tor, ["vtysh", "-c", "show bgp summary json"]).stdout)
        assert summary["ipv4Unicast"]["peers"][str(node.address)]["state"] != "Established"
    finally:
        conf.write_text(original)
        lab.exec(node.hostname, ["birdc", "configure"])
        lab.exec(node.hostname, ["birdc", "restart", "tor"])
    report = lab.verify()
    assert report.ok, [c.name for c in report.failed]


@pytest.fixture
def restored(lab):
    """A drill test that fails half way must not leave its failure to the next test."""
    yield
    if lab.state.get("failures"):
        lab.cli("restore")


# --- fail safe: drills measured in lost packets (20 probes per second from a pod) ---------------------------

def _pod_on(lab, node: str) -> dict:
    return next(p for p in lab.state["pods"].values() if p["node"] == node)


def _ms(lab, seconds: float, sources_targets: list[tuple[str, str]], event) -> list:
    from provisioner.lab.loss import Pinger

    pingers = [Pinger(src, dst, seconds) for src, dst in sources_targets]
    time.sleep(1.0)
    event()
    return [p.result() for p in pingers]


def test_unhealthy_service_withdraws_anycast_and_traffic_is_served_elsewhere_within_5s(lab, restored):
    victim = next(n for n in PLAN.nodes if n.rack == "dc1-r1")
    pod_name = next(n for n, p in lab.state["pods"].items() if p["node"] == victim.hostname)
    pod = _pod_on(lab, victim.hostname)
    anycast = str(next(PLAN.anycast[0].hosts()))
    t0 = time.monotonic()
    rc, out, err = lab.cli("drill", "service", victim.hostname, "--from", pod_name, "--format", "json")
    assert rc == 0, err
    row = json.loads(out)
    print(f"\nservice unhealthy on {victim.hostname}: " + "; ".join(
        f"{k} {v['lost']}/{v['sent']} lost, longest outage {v['longest_outage_s']}s" for k, v in row["loss"].items()))
    assert row["loss"]["anycast"]["longest_outage_s"] <= 5.0, row
    assert all(v["longest_outage_s"] <= 1.0 for k, v in row["loss"].items() if k.startswith("pod")), row
    tor_routes = json.loads(lab.exec(victim.tor, ["ip", "-j", "route", "show", str(PLAN.anycast[0])]).stdout)
    hops = {h.get("gateway") for r in tor_routes for h in r.get("nexthops", [r])}
    assert str(victim.address) not in hops, (time.monotonic() - t0, tor_routes)
    served = subprocess.run(["ip", "netns", "exec", pod["netns"], "curl", "-s", "-m", "2", f"http://{anycast}/"],
                            capture_output=True, text=True).stdout.strip()
    assert served and served != victim.hostname and served.startswith("dc1-"), served
    rc, out, _ = lab.cli("verify", "--format", "json")
    assert rc == 0, [c for c in json.loads(out)["checks"] if not c["ok"]]
    assert json.loads(out)["drills"][-1]["event"] == f"service {victim.hostname}"  # the measured table
    rc, _, err = lab.cli("restore")
    assert rc == 0, err
    rc, out, _ = lab.cli("verify", "--timeout", "30")
    assert rc == 0, out


def test_node_power_cut_leaves_other_racks_untouched_and_its_prefix_gone_within_3s(lab, restored):
    """Measured from dc1-r1 to a pod of dc2 and to the victim's rack neighbour (another rack)."""
    victim = next(n for n in PLAN.nodes if n.rack == "dc1-r2")
    src = _pod_on(lab, next(n.hostname for n in PLAN.nodes if n.rack == "dc1-r1"))
    others = [_pod_on(lab, next(n.hostname for n in PLAN.nodes if n.dc == "dc2"))["address"],
              _pod_on(lab, next(n.hostname for n in PLAN.nodes if n.rack == "dc1-r2" and n != victim))["address"]]
    cut = {}

    def power_cut() -> None:  # the pingers keep running meanwhile
        t0 = time.monotonic()
        lab.cli("fail", "host", victim.hostname)
        cut["gone"] = wait_for(lambda: not json.loads(lab.exec(victim.tor, ["ip", "-j", "route", "show",
                                                                        str(victim.pod_cidr)]).stdout), 10, 0.1)
        cut["t"] = time.monotonic() - t0

    losses = _ms(lab, 6, [(src["netns"], a) for a in others], power_cut)
    gone, withdrawn = cut["gone"], cut["t"]
    print(f"\nnode {victim.hostname} power cut: " + "; ".join(x.row() for x in losses)
          + f"; its /24 gone from {victim.tor} after {withdrawn:.1f}s")
    assert all(x.longest_outage_s <= 1.0 for x in losses), [x.row() for x in losses]
    assert gone and withdrawn <= 3.0 + 1.0, withdrawn  # the fail command itself takes up to a second
    rc, _, err = lab.cli("restore")
    assert rc == 0, err
    t0 = time.monotonic()
    rc, out, _ = lab.cli("verify", "--timeout", "30")
    print(f"restored and verified in {time.monotonic() - t0:.1f}s")
    assert rc == 0, out

def test_tor_power_cut_leaves_other_racks_untouched_and_the_racks_prefixes_gone_within_3s(lab, restored):
    tor = next(t for t in PLAN.tors if t.rack == "dc1-r2")
    spine = tor.uplinks[0].b.host
    rack_pods = [n.pod_cidr for n in PLAN.nodes if n.rack == tor.rack]
    src = _pod_on(lab, next(n.hostname for n in PLAN.nodes if n.rack == "dc1-r1"))
    others = [_pod_on(lab, next(n.hostname for n in PLAN.nodes if n.dc == d))["address"] for d in ("dc2", "dc3")]
    cut = {}

    def power_cut() -> None:
        t0 = time.monotonic()
        lab.cli("fail", "host", tor.name)
        cut["gone"] = wait_for(lambda: not any(json.loads(lab.exec(spine, ["ip", "-j", "route", "show", str(p)]).stdout)
                                               for p in rack_pods), 10, 0.1)
        cut["t"] = time.monotonic() - t0

    losses = _ms(lab, 6, [(src["netns"], a) for a in others], power_cut)
    print(f"\nToR {tor.name} power cut: " + "; ".join(x.row() for x in losses)
          + f"; the rack's /24s gone from {spine} after {cut['t']:.1f}s")
    assert all(x.longest_outage_s <= 1.0 for x in losses), [x.row() for x in losses]
    assert cut["gone"] and cut["t"] <= 3.0 + 1.0, cut
    rc, _, err = lab.cli("restore")
    assert rc == 0, err
    t0 = time.monotonic()
    rc, out, _ = lab.cli("verify", "--timeout", "30")
    print(f"restored and verified in {time.monotonic() - t0:.1f}s")
    assert rc == 0, out


def test_bird_crash_and_tor_bgpd_crash_recover_within_10s(lab, restored):
    node = next(n for n in PLAN.nodes if n.rack == "dc2-r1")
    target = _pod_on(lab, node.hostname)["address"]
    src = _pod_on(lab, next(n.hostname for n in PLAN.nodes if n.dc == "dc1"))["netns"]
    for victim in (node.hostname, node.tor):
        [loss] = _ms(lab, 14, [(src, target)], lambda v=victim: lab.cli("fail", "crash", v))
        print(f"\ncrash of the routing daemon on {victim}: pod -> {target} {loss.row()}")
        assert loss.longest_outage_s <= 10.0, loss.row()
        rc, out, _ = lab.cli("verify", "--timeout", "30")
        assert rc == 0, out


def test_attribute_abuse_from_one_node_changes_nothing_upstream(lab):
    """A node exporting its anycast with local-preference 500 and NO_EXPORT: the ToR resets both, so its ECMP
    over the rack and what it advertises to the spines stay as they were."""
    tor = PLAN.tors[0]
    rogue = next(s for s in tor.clients if s.kind == "node-tor")
    nodes = [s for s in tor.clients if s.kind == "node-tor"]
    conf = lab.root(rogue.a.host) / "etc/bird/bird.conf"
    original = conf.read_text()
    bad = original.replace("  if source = RTS_STATIC && announced() then accept;\n",
                           "  if source = RTS_STATIC && announced() then {\n    bgp_local_pref = 500;\n"
                           "    bgp_community.add((65535, 65281));\n    accept;\n  }\n", 1)
    assert bad != original
    rng = str(PLAN.anycast[0])
    try:
        conf.write_text(bad)
        assert lab.exec(rogue.a.host, ["birdc", "configure"]).returncode == 0
        time.sleep(4)
        routes = json.loads(lab.exec(tor.name, ["ip", "-j", "route", "show", rng]).stdout)
        hops = {h.get("gateway") for r in routes for h in r.get("nexthops", [r])}
        assert hops == {str(s.a.address) for s in nodes}, routes
        spine = tor.uplinks[0].b.host
        paths = json.loads(lab.exec(spine, ["vtysh", "-c", f"show bgp ipv4 unicast {rng} json"]).stdout)
        via = {p.get("peer", {}).get("hostname") or p.get("peer", {}).get("peerId") for p in paths.get("paths", [])}
        assert str(tor.uplinks[0].a.address) in via or tor.name in via, paths
    finally:
        conf.write_text(original)
        lab.exec(rogue.a.host, ["birdc", "configure"])


def test_dc_failure_drill_then_restore(lab, restored):
    rc, _, err = lab.cli("fail", "dc", "dc2")
    assert rc == 0, err
    rc, out, err = lab.cli("verify", "--format", "json")
    data = json.loads(out)
    assert rc == 0 and data["ok"], [c for c in data["checks"] if not c["ok"]]
    checks = {c["name"]: c for c in data["checks"]}
    for cluster in ("etcd", "etcd-events"):
        assert checks[f"drill: etcd {cluster} accepts writes"]["ok"]
    for spine in ("dc1-spine1", "dc3-spine1"):
        assert checks[f"drill: dc2 paths gone from {spine}"]["ok"]
        assert checks[f"anycast {spine}: ECMP over 2 racks"]["ok"]
    assert checks["anycast stays in dc1"]["ok"] and checks["anycast stays in dc3"]["ok"]
    assert not any("dc2-r" in name and c["kind"] != "drill" for name, c in checks.items())
    rc, _, err = lab.cli("restore")
    assert rc == 0, err
    rc, out, err = lab.cli("verify")
    assert rc == 0, out
    assert "PASS" in out and "drill" not in out.split("PASS")[1].split("checks")[0]


def test_host_and_link_failure_drills_then_restore(lab, restored):
    """A node losing power takes only its own session and /24; a cut uplink of the only spine isolates the rack."""
    from provisioner.pipeline import compile_site

    plan = compile_site(lab.site).plan
    victim = next(n for n in plan.nodes if n.rack == "dc1-r1")
    rc, _, err = lab.cli("fail", "host", victim.hostname)
    assert rc == 0, err
    rc, out, _ = lab.cli("verify", "--format", "json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert rc == 0, [c for c in checks.values() if not c["ok"]]
    assert checks[f"drill: bgp {victim.hostname} ~ {victim.tor} down"]["ok"]
    assert checks[f"drill: {victim.hostname} /24 gone from {victim.tor}"]["ok"]
    neighbour = next(n for n in plan.nodes if n.rack == "dc1-r1" and n != victim)
    assert not any(neighbour.hostname in name and victim.hostname not in name and c["kind"] == "drill"
                   for name, c in checks.items())
    rc, _, err = lab.cli("restore")
    assert rc == 0, err

    rc, _, err = lab.cli("fail", "link", victim.tor, "dc1-spine1")
    assert rc == 0, err
    rc, out, _ = lab.cli("verify", "--format", "json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert rc == 0, [c for c in checks.values() if not c["ok"]]
    assert checks[f"drill: bgp {victim.tor} ~ dc1-spine1 down"]["ok"]
    rc, _, err = lab.cli("restore")
    assert rc == 0, err
    rc, out, _ = lab.cli("verify")
    assert rc == 0, out
    assert "(0 drill checks)" in out


def test_root_namespace_cannot_reach_lab_addresses_except_management(lab):
    """The guard route: from the machine itself a lab underlay address is unreachable (never routed out of
    the machine), while every host's management address is on the lab bridge."""
    from provisioner.pipeline import compile_site

    for node in compile_site(lab.site).plan.nodes:
        got = subprocess.run(["ip", "route", "get", str(node.address)], capture_output=True, text=True)
        assert got.returncode != 0 and "No route to host" in got.stderr, (node.hostname, got.stdout)
    for host in lab.state["hosts"].values():
        route = subprocess.run(["ip", "-j", "route", "get", host["mgmt_address"]], capture_output=True, text=True,
                               check=True).stdout
        assert json.loads(route)[0]["dev"] == lab.state["mgmt"]["bridge"]


def test_down_leaves_nothing(lab):
    from provisioner.lab.netns import netns_list

    state_dir = lab.state_dir
    assert lab.state["status"] == "up"
    rc, _out, err = lab.cli("down")
    assert rc == 0, err
    assert not [n for n in netns_list() if n.startswith(f"{lab.prefix}-")]
    assert sorted(set(lab.namespaces_before) - set(netns_list())) == [], "down removed someone else's namespace"
    assert processes_in(lab.net_inodes) == []
    new = ps_snapshot() - lab.ps_before
    ours = [p for p in new if p[1] in LAB_COMMS and str(state_dir) in _cmdline(p[0])]
    assert ours == [], ours
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{lab.prefix}-mgmt" not in links and not re.search(rf"\b{lab.prefix}m\d+", links)
    assert not state_dir.exists()
    from provisioner.lab.netns import root_links

    if not [link for link in root_links() if link.endswith("-mgmt")]:
        routes = subprocess.run(["ip", "route", "show", "proto", "198"], capture_output=True, text=True).stdout
        assert "198.18.0.0/15" not in routes, "the guard route outlived the last lab"
    rc, _out, err = lab.cli("down")  # safe twice
    assert rc == 0, err


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
