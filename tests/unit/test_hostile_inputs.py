"""What a tired SRE types at 3 a.m.: every one gets exit 2, no traceback, and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import run_cli


def snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def expect_2(*args: str, message: str) -> str:
    code, out, err = run_cli(*args)
    assert code == 2, f"exit {code}: {out}{err}"
    assert message in err, err
    assert "Traceback" not in err
    return err


def test_bad_out_is_refused_before_the_lock_is_touched(site_copy, tmp_path: Path):
    site = site_copy("lab")
    lock = site / "allocations.yaml"
    text = lock.read_text().replace("  dc3-r2-n2: 198.19.11.0/24\n", "")  # a render would re-add it
    lock.write_text(text)
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    expect_2("render", str(site), "--out", str(a_file), message="not a directory")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep").write_text("x")
    expect_2("render", str(site), "--out", str(other), message="refusing to replace")
    assert lock.read_text() == text


def test_missing_site_directory_leaves_no_stray_lock(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expect_2("render", str(tmp_path / "nope" / "x" / "site.yaml"), message="no such site")
    expect_2("render", "nope", message="no such site")
    expect_2("release", "nope", "n1", message="no such site")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["binary", "directory"])
def test_unreadable_lock_file(site_copy, tmp_path: Path, kind: str):
    site = site_copy("lab")
    lock = site / "allocations.yaml"
    lock.unlink()
    if kind == "binary":
        lock.write_bytes(b"\xff\xfe\x00garbage")
    else:
        lock.mkdir()
    expect_2("validate", str(site), message="cannot read")
    expect_2("render", str(site), "--out", str(tmp_path / "out"), message="cannot read")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("dc1-spine1~dc1-r1-tor: 198.18.250.0/31", "dc1-spine1~dc1-r1-tor: 198.18.250.0/28", "not a /31"),
    ("dc1-spine1~dc1-r1-tor: 198.18.250.0/31", "dc1-spine1~dc1-r1-tor: 10.9.9.0/31", "outside the fabric pool"),
    ("dc1-r1-n2: 198.19.1.0/24", "dc1-r1-n2: 198.19.0.0/23", "overlaps"),
])
def test_hand_edited_lock_entries_are_checked(site_copy, tmp_path: Path, old: str, new: str, message: str):
    site = site_copy("lab")
    lock = site / "allocations.yaml"
    assert old in lock.read_text()
    lock.write_text(lock.read_text().replace(old, new))
    before = snapshot(site)
    expect_2("render", str(site), "--out", str(tmp_path / "out"), message=message)
    assert snapshot(site) == before


def test_an_orphan_of_the_wrong_size_inside_a_pool_is_refused(site_copy, tmp_path: Path):
    site = site_copy("lab")
    lock = site / "allocations.yaml"
    lock.write_text(lock.read_text().replace("pod_cidrs:\n", "pod_cidrs:\n  gone-node: 198.19.30.0/23\n"))
    expect_2("validate", str(site), message="gone-node")


@pytest.mark.parametrize("name", ["etcd", "nodes", "control-plane", "all", "rack-x"])
def test_dc_name_that_would_merge_ansible_groups(site_copy, name: str):
    site = site_copy("lab")
    text = (site / "site.yaml").read_text()
    text = text.replace("  - name: dc1\n", f"  - name: {name}\n").replace("dc: dc1,", f"dc: {name},")
    (site / "site.yaml").write_text(text)
    expect_2("validate", str(site), message="Ansible group")


def test_a_hand_edited_crlf_file_shows_as_changed(site_copy, tmp_path: Path):
    site = site_copy("lab")
    out = tmp_path / "out"
    assert run_cli("render", str(site), "--out", str(out))[0] == 0
    conf = out / "nodes" / "dc1-r1-n1" / "cni.conflist"
    original = conf.read_bytes()
    conf.write_bytes(original.replace(b"\n", b"\r\n"))
    code, text, _ = run_cli("plan", str(site), "--out", str(out), "--exit-code")
    assert code == 1 and "nodes/dc1-r1-n1/cni.conflist" in text
    assert run_cli("render", str(site), "--out", str(out))[0] == 0
    assert conf.read_bytes() == original


def test_waiver_with_a_datetime_is_bad_input(site_copy):
    site = site_copy("lab")
    (site / "waivers.yaml").write_text(
        "waivers:\n  - {id: ANY001, object: dc3, reason: test, expires: 2030-01-01 10:00:00}\n")
    expect_2("check", str(site), message="expires: must be a date")


def test_unreadable_check_options(site_copy):
    site = site_copy("lab")
    (site / "check.yaml").write_bytes(b"\xff\xfe")
    expect_2("check", str(site), message="cannot read")


def test_plan_against_nothing_or_itself(site_copy):
    site = site_copy("lab")
    expect_2("plan", str(site), "--against", "", message="empty string")
    expect_2("plan", str(site), "--against", str(site), message="the site itself")


@pytest.mark.parametrize("spec", ["dc1=1_0", "dc1=\u0663", "dc1=+3"])
def test_capacity_rejects_odd_numbers(spec: str):
    expect_2("capacity", "inventories/lab", "--add-racks", spec, message="not a whole number")


def test_site_file_that_is_not_readable_as_text(tmp_path: Path):
    site = tmp_path / "s"
    site.mkdir()
    (site / "site.yaml").write_bytes(os.urandom(64) + b"\xff")
    expect_2("validate", str(site), message="site.yaml")
