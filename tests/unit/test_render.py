"""Render: deterministic, atomic, complete; plan shows what a render would change."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from provisioner import write as write_mod
from provisioner.pipeline import compile_site
from provisioner.render import render
from provisioner.write import read_tree, write_tree
from tests.conftest import EXAMPLE, LAB
from tests.helpers import run_cli, run_process


def test_render_is_byte_identical_and_second_render_writes_nothing(site_copy, tmp_path: Path):
    site = site_copy("example")
    out = tmp_path / "out"
    code, _, _ = run_cli("render", str(site), "--out", str(out))
    assert code == 0
    tree1 = read_tree(out)
    inodes = {p: os.stat(out / p).st_ino for p in tree1}
    code, second, _ = run_cli("render", str(site), "--out", str(out))
    assert code == 0 and "(0 written," in second
    assert read_tree(out) == tree1
    assert {p: os.stat(out / p).st_ino for p in tree1} == inodes  # nothing rewritten
    assert render(compile_site(site).plan) == tree1


def test_rerender_writes_only_changed_files(site_copy, tmp_path: Path):
    site = site_copy("lab")
    out = tmp_path / "out"
    run_cli("render", str(site), "--out", str(out))
    inodes = {p: os.stat(out / p).st_ino for p in read_tree(out)}
    text = (site / "site.yaml").read_text().replace(
        "dc1-r1-n1, address: 198.18.11.1,", "dc1-r1-n1, address: 198.18.11.9,")
    (site / "site.yaml").write_text(text)
    plan = compile_site(site).plan
    artifacts = render(plan)
    current = read_tree(out)
    changed = {p for p in artifacts if current.get(p) != artifacts[p]}
    written = write_tree(out, artifacts, current)
    assert 0 < written == len(changed) < len(artifacts)
    for p in artifacts:
        if p not in changed:
            assert os.stat(out / p).st_ino == inodes[p]


def test_crash_mid_write_leaves_previous_tree_intact(site_copy, tmp_path: Path, monkeypatch):
    site = site_copy("lab")
    out = tmp_path / "out"
    run_cli("render", str(site), "--out", str(out))
    before = read_tree(out)
    artifacts = {p: t + "# changed\n" for p, t in before.items()}
    calls = {"n": 0}
    real_link = os.link

    def failing_open(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full")
        return open(*args, **kwargs)

    monkeypatch.setattr(write_mod, "open", failing_open, raising=False)
    monkeypatch.setattr(os, "link", real_link)
    with pytest.raises(OSError, match="disk full"):
        write_tree(out, artifacts, before)
    monkeypatch.undo()
    assert read_tree(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp dirs left


def test_inventory_groups_and_host_vars(tmp_path: Path):
    plan = compile_site(EXAMPLE).plan
    hosts = yaml.safe_load(render(plan)["ansible/hosts.yml"])["all"]["children"]
    assert len(hosts["nodes"]["hosts"]) == 720
    assert len(hosts["tors"]["hosts"]) == 36 and len(hosts["spines"]["hosts"]) == 6
    for group in ("control_plane", "etcd", "etcd_events"):
        assert len(hosts[group]["hosts"]) == 3
    assert len(hosts["rack_dc2_r05"]["hosts"]) == 21  # 20 nodes and the ToR
    dc_members = set(hosts["dc1"]["hosts"])
    assert {f"dc1-r01-n{i:02d}" for i in range(1, 21)} <= dc_members
    assert "cp1" in dc_members and "dc2-r01-n01" not in dc_members
    n = hosts["nodes"]["hosts"]["dc3-r07-n11"]
    node = next(x for x in plan.nodes if x.hostname == "dc3-r07-n11")
    assert n["pod_cidr"] == str(node.pod_cidr) and n["asn"] == 65307 and n["ansible_host"] == str(node.address)
    assert n["cpu_cores"] == 128 and n["cpu_vendor"] == "AuthenticAMD" and n["memory_gib"] == 512


def test_cni_and_node_podcidrs_agree_with_the_lock():
    plan = compile_site(LAB).plan
    artifacts = render(plan)
    docs = [d for d in yaml.safe_load_all(artifacts["control-plane/node-podcidrs.yaml"]) if d]
    by_name = {d["metadata"]["name"]: d["spec"] for d in docs}
    assert len(by_name) == len(plan.nodes) == 12
    for node in plan.nodes:
        assert by_name[node.hostname] == {"podCIDR": str(node.pod_cidr), "podCIDRs": [str(node.pod_cidr)]}
        cni = json.loads(artifacts[f"nodes/{node.hostname}/cni.conflist"])
        bridge = cni["plugins"][0]
        assert bridge["bridge"] == "br0"
        r = bridge["ipam"]["ranges"][0][0]
        subnet = IPv4Network(r["subnet"])
        assert subnet == node.pod_cidr and subnet.prefixlen == 24
        assert IPv4Address(r["gateway"]) == subnet.network_address + 254
        assert IPv4Address(r["rangeStart"]) == subnet.network_address + 1
        assert IPv4Address(r["rangeEnd"]) == subnet.network_address + 253


def test_plan_exit_code_and_formats(site_copy, tmp_path: Path):
    site = site_copy("lab")
    out = tmp_path / "out"
    code, text, _ = run_cli("plan", str(site), "--out", str(out), "--exit-code")
    assert code == 1 and "to add" in text
    run_cli("render", str(site), "--out", str(out))
    code, text, _ = run_cli("plan", str(site), "--out", str(out), "--exit-code")
    assert code == 0 and "no changes" in text
    text = (site / "site.yaml").read_text()
    (site / "site.yaml").write_text(text.replace("pool: general}", "pool: general, row: a}", 1))
    code, text, _ = run_cli("plan", str(site), "--out", str(out), "--format", "json", "--diff", "--exit-code")
    data = json.loads(text)
    assert code == 1 and data["changes"] is True
    assert data["files"]["added"] == [] and data["files"]["removed"] == []
    code, md, _ = run_cli("plan", str(site), "--out", str(out), "--format", "markdown", "--diff")
    assert code == 0 and md.startswith("### provisioner plan") and "<details>" in md


def test_python_dash_m_and_help_work():
    proc = run_process("--help")
    assert proc.returncode == 0
    for command in ("validate", "render", "plan", "release"):
        assert command in proc.stdout
        sub = run_process(command, "--help")
        assert sub.returncode == 0 and "Usage:" in sub.stdout
    proc = run_process("validate", str(LAB))
    assert proc.returncode == 0 and proc.stdout.startswith("ok: site lab")


def test_rack_aggregate_covers_only_that_racks_pods(site_copy):
    site = site_copy("lab")
    text = (site / "site.yaml").read_text().replace(
        "        asn: 65101\n", "        asn: 65101\n        aggregate_pods: true\n")
    (site / "site.yaml").write_text(text)
    plan = compile_site(site).plan
    tor = next(t for t in plan.tors if t.rack == "dc1-r1")
    own = [n.pod_cidr for n in plan.nodes if n.rack == "dc1-r1"]
    others = [n.pod_cidr for n in plan.nodes if n.rack != "dc1-r1"]
    assert all(any(p.subnet_of(a) for a in tor.aggregates) for p in own)
    assert not any(p.subnet_of(a) for a in tor.aggregates for p in others)
    assert f"aggregate-address {tor.aggregates[0]} summary-only" in render(plan)["tors/dc1-r1-tor/frr.conf"]
    assert all(t.aggregates == () for t in plan.tors if t.rack != "dc1-r1")


def test_render_never_replaces_a_directory_it_did_not_render(site_copy, tmp_path: Path):
    """`--out ~` or `--out inventories/lab` at 3 a.m. must not wipe anything."""
    site = site_copy("lab")
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    for out in (precious, site):
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        code, _, err = run_cli("render", str(site), "--out", str(out))
        assert code == 2 and "refusing to replace a non-empty directory" in err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("render", str(site), "--out", str(empty))[0] == 0
    assert (empty / ".provisioner-tree").is_file()
    assert run_cli("render", str(site), "--out", str(empty))[0] == 0  # its own tree: fine
