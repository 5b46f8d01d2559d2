"""The lab tier end to end: one lab for the module. up -> verify -> rogue announcement filtered -> wrong ASN
reported -> fail dc dc2 drill -> restore -> verify -> down leaves nothing behind."""

from __future__ import annotations

import json
import re
import subprocess
import time

from provisioner.pipeline import compile_site
from tests.conftest import LAB
from tests.helpers import wait_for
from tests.lab.conftest import LAB_COMMS, processes_in, ps_snapshot, ssh_argv

PLAN = compile_site(LAB).plan


def test_up_verifies_and_is_fast(lab):
    report = lab.verify()
    assert report.ok, "\n".join(f"{c.name}: {c.detail}" for c in report.failed)
    kinds = {c.kind for c in report.checks}
    assert {"bgp", "route", "anycast", "api", "etcd"} <= kinds
    assert sum(c.kind == "bgp" for c in report.checks) == len(PLAN.sessions)
    assert lab.up_seconds < 60, f"lab up took {lab.up_seconds:.1f}s"


def test_lab_is_contained(lab):
    """Every lab namespace routes only 198.18.0.0/15 and its management /20; no default via management."""
    state = lab.state
    for name, host in state["hosts"].items():
        out = subprocess.run(["ip", "-n", host["ns"], "-j", "-4", "route", "show", "table", "all"],
                             capture_output=True, text=True, check=True).stdout
        for r in json.loads(out):
            dst = r.get("dst", "")
            if r.get("type") in ("local", "broadcast") or dst.startswith("127.") or r.get("dev") == "lo":
                continue
            assert r.get("dev") != "mgmt0" or dst == state["mgmt"]["network"], f"{name}: {r}"
            if dst == "default":
                assert r.get("gateway", "").startswith("198.18.") and r["dev"] == "eth0", f"{name}: {r}"


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
    bad = original.replace("define ANNOUNCE = [", f"define ANNOUNCE = [\n  {victim_pod},", 1)
    bad = bad.replace(f"route {rogue_pod} blackhole;", f"route {rogue_pod} blackhole;\n  route {victim_pod} blackhole;")
    assert bad != original
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


def test_dc_failure_drill_then_restore(lab):
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


def test_host_and_link_failure_drills_then_restore(lab):
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
    assert not any(neighbour.hostname in name and c["kind"] == "drill" for name, c in checks.items())
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
