"""provisioner plan SITE --against REF: a semantic summary of a change, against a directory or a git ref."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, LAB
from tests.helpers import add_dc2_rack, run_cli


def add_rack(site: Path, render: bool = True) -> None:
    """Add dc2-r13 (20 nodes) and, like the SRE in the pull request, render so the lock file is updated."""
    path = site / "site.yaml"
    path.write_text(add_dc2_rack(path.read_text()))
    if render:
        code, _, err = run_cli("render", str(site), "--out", str(site.parent.parent / "rendered-new"))
        assert code == 0, err


def against_json(site: Path, ref: str, *extra: str) -> tuple[int, dict]:
    code, out, err = run_cli("plan", str(site), "--against", ref, "--format", "json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_add_rack_against_directory(site_copy):
    site = site_copy("example")
    add_rack(site)
    code, data = against_json(site, str(EXAMPLE))
    assert code == 0
    sem = data["semantic"]
    assert len(sem["nodes"]["added"]) == 20 and not sem["nodes"]["removed"] and not sem["nodes"]["changed"]
    assert all(n["rack"] == "dc2-r13" and n["dc"] == "dc2" for n in sem["nodes"]["added"].values())
    assert list(sem["racks"]["added"]) == ["dc2-r13"] and not sem["racks"]["removed"]
    assert len(sem["pods"]["allocated"]) == 20 and sem["pods"]["released"] == {}
    assert len(sem["sessions"]["added"]) == 22  # 20 node-tor + 2 tor-spine
    assert sem["sessions"]["removed"] == [] and sem["sessions"]["changed"] == {}
    anycast = {a["dc"]: (a["before"], a["after"]) for a in sem["anycast"]}
    assert anycast == {"dc1": (240, 240), "dc2": (240, 260), "dc3": (240, 240)}
    for cluster in sem["etcd"].values():
        assert not (cluster["added"] or cluster["removed"] or cluster["changed"] or cluster["settings_changed"])
    assert sem["touched"]["racks"] == {"dc2-r13": "added"}
    # dc2's spines peer with the new ToR; every spine sends its upstreams the site's rack subnets (egress must
    # survive a DC's upstreams failing), so the new rack's subnet reaches every spine's UPSTREAM-OUT as well.
    assert sem["touched"]["spines"] == {s: "changed" for s in
                                        ("dc1-spine1", "dc1-spine2", "dc2-spine1", "dc2-spine2", "dc3-spine1",
                                         "dc3-spine2")}
    assert "tors/dc2-r13-tor/frr.conf" in sem["files"]["added"] or any(
        p.startswith("nodes/dc2-r13-n01/") for p in sem["files"]["added"])
    assert not any(p.startswith("nodes/dc1-") for p in sem["files"]["changed"])  # stability
    assert data["check"]["summary"]["errors"] == 0
    assert not sem["empty"]


def test_lock_not_updated_is_a_finding(site_copy):
    site = site_copy("example")
    add_rack(site, render=False)
    code, data = against_json(site, str(EXAMPLE), "--exit-code")
    assert code == 1
    assert {f["id"] for f in data["check"]["findings"]} == {"LCK002"}
    assert len(data["semantic"]["pods"]["allocated"]) == 20  # what render would allocate


def test_text_summary_comes_before_files(site_copy):
    site = site_copy("example")
    add_rack(site)
    code, out, _ = run_cli("plan", str(site), "--against", str(EXAMPLE), "--diff")
    assert code == 0
    assert "nodes: 20 added (dc2-r13-n01, dc2-r13-n02, dc2-r13-n03, dc2-r13-n04 and 16 more), 0 removed" in out
    assert "racks: 1 added (dc2-r13), 0 removed, 0 changed" in out
    assert "pod /24s: 20 allocated, 0 released" in out
    assert "BGP sessions: 22 added, 0 removed, 0 changed" in out
    assert "anycast 10.200.1.0/24 announcers in dc2: 240 -> 260 (+20)" in out
    assert "anycast 10.200.1.0/24 announcers in dc1: 240 -> 240 (unchanged)" in out
    assert "etcd: membership unchanged" in out and "etcd-events: membership unchanged" in out
    assert "check (this change): 0 errors, 0 warnings, 0 waived" in out
    assert out.index("semantic summary:") < out.index("files:") < out.index("+++ b/")


def test_markdown_is_a_pr_comment(site_copy):
    site = site_copy("example")
    add_rack(site)
    code, out, _ = run_cli("plan", str(site), "--against", str(EXAMPLE), "--format", "markdown")
    assert code == 0
    assert out.startswith("### provisioner plan: `example` against")
    assert "| nodes | 20 | 0 | 0 |" in out and "| pod /24s | 20 | 0 | – |" in out
    assert "| `10.200.1.0/24` | dc2 | 240 | 260 | **+20** |" in out
    assert "```mermaid\nflowchart LR" in out
    assert 'subgraph dc_dc2["dc2"]' in out and 'racks_dc2_0["dc2-r13 · added<br/>' in out
    assert re.search(r"class [a-z_0-9,]*racks_dc2_0[a-z_0-9,]* added\n", out)
    assert "<details><summary>file diff</summary>" in out
    assert len(out) < 65_536  # GitHub's comment limit


def test_etcd_member_move(site_copy):
    site = site_copy("example")
    path = site / "site.yaml"
    path.write_text(path.read_text().replace("{name: etcd1, dc: dc1, rack: dc1-r02, address: 10.1.2.201",
                                             "{name: etcd1, dc: dc1, rack: dc1-r05, address: 10.1.5.201"))
    _, data = against_json(site, str(EXAMPLE))
    sem = data["semantic"]
    assert sem["etcd"]["etcd"]["changed"] == {"etcd1": {"address": ["10.1.2.201", "10.1.5.201"],
                                                        "rack": ["dc1-r02", "dc1-r05"]}}
    assert not sem["etcd"]["etcd-events"]["changed"]
    assert sem["vms"]["changed"] == {"etcd1": {"address": ["10.1.2.201", "10.1.5.201"],
                                               "rack": ["dc1-r02", "dc1-r05"]}}
    assert not sem["nodes"]["added"] and not sem["pods"]["allocated"]
    assert sem["touched"]["vms"]["etcd1"] == "changed"
    _, out, _ = run_cli("plan", str(site), "--against", str(EXAMPLE))
    assert "etcd: MEMBERSHIP CHANGE ~etcd1 (address 10.1.2.201 -> 10.1.5.201, rack dc1-r02 -> dc1-r05)" in out
    assert any(line.startswith("  etcd: 3 members") for line in out.splitlines())  # fault tolerance


def test_no_change_and_exit_code(site_copy):
    site = site_copy("lab")
    code, data = against_json(site, str(LAB), "--exit-code")
    assert code == 0 and data["semantic"]["empty"]
    code, out, _ = run_cli("plan", str(site), "--against", str(LAB))
    assert "no changes" in out
    path = site / "site.yaml"
    path.write_text(path.read_text().replace("address: 198.18.11.2, hardware", "address: 198.18.11.9, hardware"))
    code, data = against_json(site, str(LAB), "--exit-code")
    assert code == 1
    assert data["semantic"]["nodes"]["changed"] == {"dc1-r1-n2": {"address": ["198.18.11.2", "198.18.11.9"]}}
    assert list(data["semantic"]["sessions"]["changed"]) == ["node-tor dc1-r1-n2~dc1-r1-tor"]


def test_removed_node_shows_release_and_findings(site_copy):
    site = site_copy("lab")
    path = site / "site.yaml"
    text = path.read_text()
    line = next(x for x in text.splitlines() if "hostname: dc3-r2-n2" in x)
    path.write_text(text.replace(line + "\n", ""))
    _, data = against_json(site, str(LAB))
    sem = data["semantic"]
    assert list(sem["nodes"]["removed"]) == ["dc3-r2-n2"]
    assert sem["pods"]["released"] == {}  # orphaned, still reserved until `release`
    assert [f["id"] for f in data["check"]["findings"]] == ["LCK001"]
    assert {(a["dc"], a["before"], a["after"]) for a in sem["anycast"]} >= {("dc3", 4, 3)}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root / "inventories" / "example")
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.email=t@example.org", "-c", "user.name=t", "add", ".")
    git(root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "-m", "base")
    return root


def test_against_git_ref(repo):
    site = repo / "inventories" / "example"
    add_rack(site)
    code, data = against_json(site, "main")
    assert code == 0
    assert data["against"].startswith("main (")
    sem = data["semantic"]
    assert len(sem["nodes"]["added"]) == 20 and len(sem["pods"]["allocated"]) == 20
    assert list(sem["racks"]["added"]) == ["dc2-r13"]
    # HEAD~0 of a committed change: compare with the commit before it.
    git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "-am", "rack")
    code, data = against_json(site, "HEAD~1")
    assert len(data["semantic"]["nodes"]["added"]) == 20
    code, data = against_json(site, "HEAD")
    assert data["semantic"]["empty"]


def test_against_git_ref_uses_the_base_lock(repo):
    """A lock entry released on the new side shows as a released /24."""
    site = repo / "inventories" / "example"
    path = site / "site.yaml"
    path.write_text(path.read_text().replace("{count: 20, name_pattern: 'dc3-r12-n{index:02d}'",
                                             "{count: 19, name_pattern: 'dc3-r12-n{index:02d}'"))
    code, _, err = run_cli("release", str(site), "dc3-r12-n20")
    assert code == 0, err
    _, data = against_json(site, "main")
    sem = data["semantic"]
    assert list(sem["nodes"]["removed"]) == ["dc3-r12-n20"]
    assert list(sem["pods"]["released"]) == ["dc3-r12-n20"]
    assert data["check"]["findings"] == []


@pytest.mark.parametrize("ref", ["no-such-ref", "v9.9.9"])
def test_bad_ref_exit_2(repo, ref):
    code, _, err = run_cli("plan", str(repo / "inventories" / "example"), "--against", ref)
    assert code == 2 and "neither a directory nor a git ref" in err


def test_site_missing_at_ref_exit_2(repo):
    other = repo / "inventories" / "other"
    shutil.copytree(LAB, other)
    code, _, err = run_cli("plan", str(other), "--against", "main")
    assert code == 2 and "does not exist at main" in err


def test_directory_without_site_exit_2(tmp_path):
    code, _, err = run_cli("plan", str(LAB), "--against", str(tmp_path))
    assert code == 2 and "no site.yaml" in err
