"""`provisioner lab twin`: the example renumbered into the lab range, with the same shape (no root needed)."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, ip_address, ip_network
from pathlib import Path

import pytest

from provisioner.ipam import read_lock
from provisioner.lab.topology import LAB_RANGE, MGMT_RANGE, OUTSIDE, derive
from provisioner.lab.twin import compare
from provisioner.load import locate
from provisioner.pipeline import compile_site
from tests.conftest import EXAMPLE, INVENTORIES
from tests.helpers import run_cli

IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:/\d{1,2})?\b")


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("twin") / "inventories" / "example-twin"
    rc, stdout, err = run_cli("lab", "twin", str(EXAMPLE), "--out", str(out))
    assert rc == 0, err
    return out, stdout


def test_every_address_of_the_twin_is_in_the_lab_range_and_none_in_management(twin):
    out, _ = twin
    found = [m for f in ("site.yaml", "allocations.yaml") for m in IPV4.findall((out / f).read_text())]
    assert len(found) > 1500  # 720 pod prefixes, 720 node addresses, fabric links, the plan
    for text in found:
        net = ip_network(text, strict=False)
        assert net.subnet_of(LAB_RANGE) and not net.overlaps(MGMT_RANGE), text
        assert not net.overlaps(ip_network(f"{OUTSIDE}/24", strict=False)), text
    # the lab's own safety validation accepts it (the default prefix: 777 hosts need its /20 management network)
    topo = derive(compile_site(out).plan, "plab")
    assert len([h for h in topo.hosts if h.kind == "node"]) == 720


def test_twin_has_the_shape_of_the_example(twin):
    out, stdout = twin
    source, copy = compile_site(EXAMPLE).plan, compile_site(out).plan
    assert compare(source, copy) == []
    assert len(copy.sessions) == len(source.sessions) and len(copy.nodes) == 720
    assert "same as the source: DCs, racks, nodes, switches" in stdout
    assert "pod prefixes are 3 bits longer (/24 -> /27)" in stdout and "max_pods 110 -> 29" in stdout


def test_mapping_is_documented_arithmetic(twin):
    """Pools: the k-th /24 becomes the k-th /27 of 198.19.0.0/17; blocks keep their host bits."""
    out, stdout = twin
    src, dst = read_lock(locate(EXAMPLE)), read_lock(locate(out))
    for node in ("dc1-r01-n01", "dc2-r07-n13", "dc3-r12-n20"):
        k = (int(src.pod_cidrs[node].network_address) - int(ip_address("10.100.0.0"))) >> 8
        assert dst.pod_cidrs[node] == IPv4Network((int(ip_address("198.19.0.0")) + k * 32, 27)), node
        assert str(dst.node_addresses[node]).split(".")[3] == str(src.node_addresses[node]).split(".")[3]
    assert str(dst.node_addresses["dc1-r01-n07"]) == "198.18.0.7"  # 10.1.1.0/24 is the first block
    assert re.search(r"pod pool pods-a\s+10\.100\.0\.0/14 \(/24 per node\)\s+198\.19\.0\.0/17 \(/27 per node\)", stdout)
    assert re.search(r"block\s+10\.255\.0\.0/22\s+198\.18\.44\.0/22", stdout)  # aligned to its own size


def test_twin_is_deterministic_and_refuses_to_overwrite_a_real_site(twin, tmp_path):
    out, _ = twin
    again = tmp_path / "again"
    assert run_cli("lab", "twin", str(EXAMPLE), "--out", str(again))[0] == 0
    for f in ("site.yaml", "allocations.yaml"):
        assert (again / f).read_text() == (out / f).read_text()
    real = tmp_path / "real"
    real.mkdir()
    (real / "site.yaml").write_text("site: mine\n")
    rc, _, err = run_cli("lab", "twin", str(EXAMPLE), "--out", str(real))
    assert rc == 2 and "is not a twin" in err and "Traceback" not in err
    assert (real / "site.yaml").read_text() == "site: mine\n" and not (real / "allocations.yaml").exists()


def test_a_site_that_cannot_fit_is_refused_with_a_clear_error(site_copy, tmp_path):
    site = site_copy("example")
    text = (site / "site.yaml").read_text()
    (site / "site.yaml").write_text(text.replace("cidr: 10.100.0.0/14, node_prefix_len: 24",
                                                 "cidr: 10.96.0.0/11, node_prefix_len: 24"))
    rc, _, err = run_cli("lab", "twin", str(site), "--out", str(tmp_path / "t"))
    assert rc == 2 and "do not fit into 198.19.0.0/17" in err and "Traceback" not in err
    assert not (tmp_path / "t").exists()


def test_scaled_twin_keeps_the_fabric_and_the_first_nodes(tmp_path):
    out = tmp_path / "scaled"
    rc, stdout, err = run_cli("lab", "twin", str(EXAMPLE), "--out", str(out), "--nodes-per-rack", "3")
    assert rc == 0, err
    plan = compile_site(out).plan
    assert len(plan.nodes) == 108 and len(plan.tors) == 36 and len(plan.spines) == 6 and len(plan.upstreams) == 6
    assert {n.hostname for n in plan.nodes if n.rack == "dc2-r05"} == {f"dc2-r05-n0{i}" for i in (1, 2, 3)}
    assert "scaled: only the first 3 nodes of each rack" in stdout and "shape differences" in stdout


def test_upstreams_of_a_dc_hold_each_others_probe_addresses():
    """Two upstreams per DC (mid): a probe of one may leave through its sibling, which must answer it."""
    plan = compile_site(INVENTORIES / "mid").plan
    topo = derive(plan, "pmid")
    for up in plan.upstreams:
        held = {str(a.ip) for a in topo.host(up.name).loopback}
        assert held == {str(u.router_id) for u in plan.upstreams if u.dc == up.dc} | {OUTSIDE}, up.name
