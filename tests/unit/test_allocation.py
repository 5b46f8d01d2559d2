"""Stable allocation: existing /24s never move; removed nodes keep theirs until released."""

from __future__ import annotations

import fcntl
import os
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml

from provisioner.errors import InputError
from provisioner.write import read_tree, site_lock
from tests.helpers import add_dc2_rack, run_cli


def lock_of(site: Path) -> dict:
    return yaml.safe_load((site / "allocations.yaml").read_text())


def render(site: Path, out: Path) -> str:
    code, stdout, err = run_cli("render", str(site), "--out", str(out))
    assert code == 0, err
    return stdout


def test_adding_a_rack_moves_nothing_and_touches_no_existing_node(site_copy, tmp_path: Path):
    site = site_copy("example")
    out = tmp_path / "out"
    render(site, out)
    lock_before, tree_before = lock_of(site), read_tree(out)

    text = (site / "site.yaml").read_text()
    (site / "site.yaml").write_text(add_dc2_rack(text))
    code, _, _ = run_cli("plan", str(site), "--out", str(out), "--format", "json")
    assert code == 0
    render(site, out)
    lock_after, tree_after = lock_of(site), read_tree(out)

    for section in ("pod_cidrs", "node_addresses", "fabric_links"):
        for key, value in lock_before[section].items():
            assert lock_after[section][key] == value, f"{section}.{key} moved"
    new_nodes = {f"dc2-r13-n{i:02d}" for i in range(1, 21)}
    assert set(lock_after["pod_cidrs"]) - set(lock_before["pod_cidrs"]) == new_nodes
    new_prefixes = [IPv4Network(lock_after["pod_cidrs"][n]) for n in new_nodes]
    old_prefixes = {IPv4Network(v) for v in lock_before["pod_cidrs"].values()}
    assert not old_prefixes & set(new_prefixes)
    # No existing node's files change; only site-wide files (inventory, podCIDRs list) and the
    # rack's own ToR/spine neighbours may.
    for path, text in tree_before.items():
        if path.startswith("nodes/"):
            assert tree_after[path] == text, f"{path} changed"
    added = set(tree_after) - set(tree_before)
    assert {f"nodes/{n}/cni.conflist" for n in new_nodes} <= added


def test_removed_node_keeps_its_prefix_until_released(site_copy, tmp_path: Path):
    site = site_copy("lab")
    out = tmp_path / "out"
    render(site, out)
    victim_prefix = lock_of(site)["pod_cidrs"]["dc1-r1-n2"]
    text = (site / "site.yaml").read_text()
    text = text.replace("hostname: dc1-r1-n2, address: 198.18.11.2,", "hostname: dc1-r1-n3, address: 198.18.11.3,")
    (site / "site.yaml").write_text(text)

    stdout = render(site, out)
    lock = lock_of(site)
    assert "orphaned" in stdout and "dc1-r1-n2" in stdout
    assert lock["pod_cidrs"]["dc1-r1-n2"] == victim_prefix  # still reserved
    assert lock["pod_cidrs"]["dc1-r1-n3"] != victim_prefix
    assert "nodes/dc1-r1-n2/cni.conflist" not in read_tree(out)

    # Releasing a node still in site.yaml is refused, and leaves the lock alone.
    before = (site / "allocations.yaml").read_text()
    code, _, err = run_cli("release", str(site), "dc1-r1-n1")
    assert code == 2 and "still in site.yaml" in err
    code, _, err = run_cli("release", str(site), "no-such-node")
    assert code == 2 and "dc1-r1-n2" in err  # the hint lists the orphans
    assert (site / "allocations.yaml").read_text() == before

    code, stdout, _ = run_cli("release", str(site), "dc1-r1-n2")
    assert code == 0 and victim_prefix in stdout
    assert "dc1-r1-n2" not in lock_of(site)["pod_cidrs"]

    # Now a new node may take the freed /24 (first fit).
    text = (site / "site.yaml").read_text().replace(
        "          - {hostname: dc1-r1-n3,",
        "          - {hostname: dc1-r1-n4, address: 198.18.11.4, hardware: amd-128c-512g}\n"
        "          - {hostname: dc1-r1-n3,")
    (site / "site.yaml").write_text(text)
    render(site, out)
    assert lock_of(site)["pod_cidrs"]["dc1-r1-n4"] == victim_prefix


def test_pool_exhaustion_says_how_many_are_missing(site_copy, tmp_path: Path):
    site = site_copy("lab")
    text = (site / "site.yaml").read_text().replace("cidr: 198.19.0.0/19", "cidr: 198.19.0.0/22")
    (site / "site.yaml").write_text(text)
    (site / "allocations.yaml").unlink()
    code, _, err = run_cli("render", str(site), "--out", str(tmp_path / "out"))
    assert code == 2
    assert "pod pools exhausted: 8 more node prefixes are needed" in err  # 12 nodes, 4 /24s
    assert not (site / "allocations.yaml").exists()
    assert not (tmp_path / "out").exists()


def test_nodes_without_address_get_a_locked_one(site_copy, tmp_path: Path):
    site = site_copy("lab")
    text = (site / "site.yaml").read_text().replace(
        "hostname: dc1-r1-n2, address: 198.18.11.2,", "hostname: dc1-r1-n2,")
    (site / "site.yaml").write_text(text)
    render(site, tmp_path / "out")
    assigned = lock_of(site)["node_addresses"]["dc1-r1-n2"]
    assert assigned == "198.18.11.2"  # lowest free: .1 is dc1-r1-n1
    # An explicit node added later at a lower address does not move the locked one.
    text = text.replace("          - {hostname: dc1-r1-n2,", "          - {hostname: dc1-r1-n0, address: 198.18.11.3, "
                        "hardware: amd-128c-512g}\n          - {hostname: dc1-r1-n2,")
    (site / "site.yaml").write_text(text)
    render(site, tmp_path / "out")
    assert lock_of(site)["node_addresses"]["dc1-r1-n2"] == assigned


def test_example_allocations_are_first_fit_in_site_order(site_copy, tmp_path: Path):
    site = site_copy("example")
    (site / "allocations.yaml").unlink()
    render(site, tmp_path / "out")
    pods = lock_of(site)["pod_cidrs"]
    assert pods["dc1-r01-n01"] == "10.100.0.0/24"
    assert pods["dc1-r01-n02"] == "10.100.1.0/24"
    ordered = [IPv4Network(pods[f"dc{d}-r{r:02d}-n{n:02d}"]) for d in (1, 2, 3) for r in range(1, 13)
               for n in range(1, 21)]
    assert ordered == sorted(ordered) and len(set(ordered)) == 720
    assert all(p.subnet_of(IPv4Network("10.100.0.0/14")) for p in ordered)


def test_lock_is_serialised(tmp_path: Path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(InputError, match="another provisioner run"), site_lock(tmp_path, wait=False):
            pass
    finally:
        os.close(fd)
    with site_lock(tmp_path, wait=False):
        pass
    assert list(tmp_path.iterdir()) == []  # taking the lock writes nothing into the site


def test_assigned_addresses_never_take_a_router_id(site_copy, tmp_path: Path):
    """A ToR router id inside its rack subnet is reserved, like the ToR's own address."""
    site = site_copy("lab")
    text = (site / "site.yaml").read_text()
    text = text.replace("tor: {name: dc1-r1-tor, router_id: 198.18.11.254}",
                        "tor: {name: dc1-r1-tor, router_id: 198.18.11.1}")
    text = text.replace("hostname: dc1-r1-n1, address: 198.18.11.1,", "hostname: dc1-r1-n1,")
    (site / "site.yaml").write_text(text)
    (site / "allocations.yaml").unlink()
    render(site, tmp_path / "out")
    assert lock_of(site)["node_addresses"]["dc1-r1-n1"] == "198.18.11.3"  # .1 router id, .2 n2


def test_a_locked_address_claimed_by_site_yaml_is_an_error_not_a_move(site_copy, tmp_path: Path):
    site = site_copy("example")
    render(site, tmp_path / "out")
    lock_before = (site / "allocations.yaml").read_text()
    assert lock_of(site)["node_addresses"]["dc1-r01-n05"] == "10.1.1.5"
    text = (site / "site.yaml").read_text().replace(
        "tor: {name: dc1-r01-tor, router_id: 10.254.1.1}", "tor: {name: dc1-r01-tor, router_id: 10.1.1.5}")
    (site / "site.yaml").write_text(text)
    code, _, err = run_cli("render", str(site), "--out", str(tmp_path / "out"))
    assert code == 2 and "10.1.1.5 is locked to dc1-r01-n05" in err
    assert (site / "allocations.yaml").read_text() == lock_before
