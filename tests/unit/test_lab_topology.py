"""Lab topology derivation (no root): addresses, names, one link per session, management network."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from provisioner.lab.hosts import cpuinfo, meminfo, setup_script
from provisioner.lab.topology import (
    IFNAMSIZ,
    LAB_RANGE,
    MGMT_RANGE,
    OUTSIDE,
    TopologyError,
    derive,
    lab_prefix,
    mgmt_network,
    validate,
)
from provisioner.pipeline import compile_site
from tests.conftest import LAB

PLAN = compile_site(LAB).plan


@pytest.fixture(scope="module")
def topo():
    return derive(PLAN, "plab")


def test_one_host_per_switch_node_and_vm(topo):
    expected = {s.name for s in PLAN.spines} | {t.name for t in PLAN.tors} | {n.hostname for n in PLAN.nodes} \
        | {v.name for v in PLAN.vms} | {u.name for u in PLAN.upstreams}
    assert {h.name for h in topo.hosts} == expected
    assert all(h.ns == f"plab-{h.name}" for h in topo.hosts)


def test_every_data_address_in_the_lab_range(topo):
    addresses = topo.addresses()
    assert addresses
    assert all(a.ip in LAB_RANGE and a.ip not in MGMT_RANGE for _, a in addresses)
    assert all(r.via in LAB_RANGE for h in topo.hosts for r in h.routes)
    assert all(h.mgmt.ip in MGMT_RANGE for h in topo.hosts)
    assert len({h.mgmt.ip for h in topo.hosts} | {topo.mgmt_gateway.ip}) == len(topo.hosts) + 1


def test_interface_names_fit_and_are_unique(topo):
    names = [topo.mgmt_bridge, *(h.mgmt_peer for h in topo.hosts)]
    assert len(set(names)) == len(names)
    per_host: dict[str, list[str]] = {}
    for link in topo.links:
        for end in (link.a, link.b):
            per_host.setdefault(end.host, []).append(end.ifname)
            names.append(end.ifname)
    assert all(len(n) <= IFNAMSIZ for n in names)
    assert all(len(v) == len(set(v)) for v in per_host.values())


def test_one_link_per_session_plus_one_per_vm_without_bgp(topo):
    by_session = [li.session for li in topo.links if li.session]
    assert sorted(by_session) == sorted(s.id for s in PLAN.sessions)
    no_bgp = [li for li in topo.links if li.session is None]
    assert {li.a.host for li in no_bgp} == {v.name for v in PLAN.vms if v.session is None}


def test_links_carry_the_session_addresses(topo):
    sessions = {s.id: s for s in PLAN.sessions}
    for link in topo.links:
        if link.session is None:
            continue
        s = sessions[link.session]
        assert link.a.address.ip == s.a.address
        if s.kind in ("tor-spine", "spine-spine", "spine-upstream"):
            assert link.b.address.ip == s.b.address and link.a.address.network == s.subnet == link.b.address.network
        else:  # a server port on the ToR's rack bridge; the ToR address sits on the bridge
            assert link.b.address is None and link.b.master == "br-rack"
            tor = topo.host(s.b.host)
            assert tor.bridges[0].address.ip == s.b.address


def test_nodes_leave_br0_to_cni_and_hold_anycast_through_their_service_proxy(topo):
    for n in PLAN.nodes:
        h = topo.host(n.hostname)
        assert h.bridges == () and h.loopback == ()  # br0 comes from the CNI bridge plugin, anycast from the proxy
        assert {a.network for a in h.anycast} <= set().union(*({IPv4Network(f"{x}/32") for x in r} for r in
                                                               PLAN.anycast))
        assert h.anycast and not h.forwarding  # forwarding: the bridge plugin turns it on (isGateway)
        assert h.daemons == ("proxy", "bird", "health") and h.hw["cores"] == n.hardware.cores
        assert (f"nodes/{n.hostname}/cni.conflist", "/etc/cni/net.d/10-pods.conflist") in h.configs


def test_upstreams_are_lab_hosts_holding_their_probe_address(topo):
    assert PLAN.upstreams
    for u in PLAN.upstreams:
        h = topo.host(u.name)
        assert h.kind == "upstream" and h.dc == u.dc and h.daemons == ("frr",) and h.forwarding
        assert [str(a.ip) for a in h.loopback] == [str(u.router_id), OUTSIDE]
        links = [li for li in topo.links if u.name in li.hosts]
        assert {li.kind for li in links} == {"spine-upstream"} and len(links) == len(u.sessions)


def test_vms_daemons_and_default_gateway(topo):
    for v in PLAN.vms:
        h = topo.host(v.name)
        assert [(str(r.dst), r.via) for r in h.routes] == [("0.0.0.0/0", v.tor_address)]
        assert h.daemons == {"control_plane": ("apiserver", "bird", "health"), "etcd": ("etcd",),
                             "etcd_events": ("etcd-events",)}[v.role]


def test_prefix_and_management_network():
    assert lab_prefix("plab") == "plab"
    assert mgmt_network("plab") == MGMT_RANGE
    other = mgmt_network("plab2")
    assert other.subnet_of(MGMT_RANGE) and other.prefixlen == 24 and other != IPv4Network("198.19.240.0/24")
    t = derive(PLAN, "plab2")
    assert all(h.ns.startswith("plab2-") and h.mgmt.ip in other for h in t.hosts)
    for bad in ("Plab", "p-lab", "averyverylongprefix", ""):
        with pytest.raises(TopologyError):
            lab_prefix(bad) if bad else lab_prefix("-")


def test_validate_refuses_addresses_outside_the_lab_range(topo, monkeypatch):
    from dataclasses import replace
    from ipaddress import IPv4Interface

    leaky = replace(topo.hosts[0], loopback=(IPv4Interface("10.0.0.1/32"),))
    bad = replace(topo, hosts=(leaky, *topo.hosts[1:]))
    with pytest.raises(TopologyError, match=r"outside 198\.18\.0\.0/15"):
        validate(bad)


def test_fake_proc_files_match_the_model():
    text = cpuinfo(cpu_vendor="AuthenticAMD", sockets=2, cores=128)
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(blocks) == 128
    cores = {(line.split(":")[1].strip()) for b in blocks for line in b.splitlines() if line.startswith("core id")}
    sockets = {line.split(":")[1].strip() for b in blocks for line in b.splitlines() if line.startswith("physical")}
    assert len(cores) == 64 and sockets == {"0", "1"} and "AuthenticAMD" in blocks[0]
    assert meminfo(memory_gib=512).startswith("MemTotal:")
    assert f"{512 * 1024 * 1024} kB" in meminfo(memory_gib=512)


def test_setup_script_never_routes_via_management(topo, tmp_path):
    for h in topo.hosts:
        script = setup_script(topo, h, tmp_path)
        assert "dev mgmt0" not in "\n".join(li for li in script.splitlines() if li.startswith("route "))
        assert f"addr add {h.mgmt} dev mgmt0" in script and "mgmt0/forwarding" in script


def test_health_sample_keeps_checks_on_the_first_node_of_each_rack():
    """--health sample: one checked node per rack; the others hold anycast with the socat stand-in and announce
    it unconditionally (their BIRD health set lists every range)."""
    from provisioner.lab.up import static_health_set

    topo = derive(PLAN, "plab", health="sample")
    nodes = [h for h in topo.hosts if h.kind == "node"]
    checked = {h.name for h in nodes if "health" in h.daemons}
    assert checked == {min(h.name for h in nodes if h.rack == rack) for rack in {h.rack for h in nodes}}
    assert all(h.daemons == ("proxy-lite", "bird") for h in nodes if h.name not in checked)
    assert all("health" in h.daemons for h in derive(PLAN, "plab").hosts if h.kind == "node")
    assert not any("health" in h.daemons for h in derive(PLAN, "plab", health="none").hosts if h.kind == "node")
    text = static_health_set(PLAN, nodes[0].name)
    assert "define ACAST_PS_ADVERTISE =" in text and "0.0.0.0/32" in text
    for rng in PLAN.anycast:
        assert f"{next(rng.hosts())}/32" in text
