"""docs/howto: each page is run as written (tests/howto.py: its edits, its commands in order, its excerpts of
what the commands print) in a git copy of inventories/example, then what the page promises is asserted here
from the files and the JSON output: allocations of other nodes never move, release frees the /24s, the
comment shows the change and fits a PR comment."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from tests.helpers import run_cli
from tests.howto import HOWTO, Project, blocks, matches, run_page

MAX_COMMENT = 65_536


@pytest.fixture(autouse=True)
def _git():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")


PAGES = ("add-a-rack.md", "replace-a-node.md", "decommission-a-rack.md")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_is_an_edit_commands_and_what_they_print(page):
    """A page the test could not check would be a page that can drift: each has an edit, commands, excerpts,
    and is listed in the index."""
    langs = [lang for lang, _ in blocks((HOWTO / page).read_text())]
    assert "diff" in langs and "sh" in langs and {"text", "markdown"} & set(langs)
    assert set(langs) <= {"diff", "sh", "text", "markdown", "console"}, langs
    assert f"({page})" in (HOWTO / "README.md").read_text()


def test_excerpts_are_whole_lines_in_order():
    out = "FITS\n  - warning: CAP001 pool\nrack 16 would not fit:\n"
    assert matches("FITS\n…\nrack … would not fit:", out) is None
    assert matches("rack 16 would not fit:\nFITS", out) == "FITS"  # order matters
    assert matches("FIT", out) == "FIT"  # a whole line, not a substring
    assert matches("  - warning: CAP002 …", out) == "  - warning: CAP002 …"


def lock_of(text: str) -> dict:
    return yaml.safe_load(text)


def kept(before: dict, after: dict, section: str) -> None:
    """Every entry of ``section`` in ``before`` is still in ``after`` with the same value."""
    moved = {k: (v, after[section].get(k)) for k, v in before[section].items() if after[section].get(k) != v}
    assert not moved, f"{section}: allocations moved or vanished: {moved}"


def against(project: Project, ref: str) -> dict:
    cwd = os.getcwd()
    os.chdir(project.root)
    try:
        code, out, err = run_cli("plan", "inventories/example", "--against", ref, "--format", "json")
    finally:
        os.chdir(cwd)
    assert code == 0, err
    return json.loads(out)


def capacity(project: Project) -> dict:
    code, out, err = run_cli("capacity", str(project.root / "inventories" / "example"), "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_add_a_rack(tmp_path):
    project = run_page("add-a-rack.md", tmp_path)
    base = lock_of(project.git("show", "main:inventories/example/allocations.yaml").stdout)
    after = lock_of(project.lock())
    for section in ("pod_cidrs", "node_addresses", "fabric_links"):
        kept(base, after, section)
    new = sorted(set(after["pod_cidrs"]) - set(base["pod_cidrs"]))
    assert new == [f"dc2-r13-n{i:02d}" for i in range(1, 21)]
    # The /24s are the first free ones, and the addresses the lowest of the new rack subnet.
    assert [after["node_addresses"][n] for n in new] == [f"10.2.13.{i}" for i in range(1, 21)]
    data = against(project, "main")
    sem = data["semantic"]
    assert list(sem["racks"]["added"]) == ["dc2-r13"] and not sem["racks"]["removed"]
    assert not sem["nodes"]["removed"] and not sem["nodes"]["changed"] and len(sem["nodes"]["added"]) == 20
    assert not sem["sessions"]["removed"] and not sem["sessions"]["changed"]
    assert data["check"]["summary"]["errors"] == 0
    comment = project.last("provisioner plan").out
    assert len(comment) <= MAX_COMMENT
    # No other node's or ToR's file changes: besides the new rack's files, only the spines (the dc2 ones get the
    # new ToR as a neighbour; every spine's UPSTREAM-OUT gains the rack subnet) and the site-wide lists.
    changed = sem["files"]["changed"]
    assert {"spines/dc2-spine1/frr.conf", "spines/dc2-spine2/frr.conf"} <= set(changed)
    assert [f for f in changed if f.startswith(("nodes/", "tors/", "etcd", "control-plane/cp"))] == []


def test_replace_a_node(tmp_path):
    project = run_page("replace-a-node.md", tmp_path)
    base = lock_of(project.git("show", "main~1:inventories/example/allocations.yaml").stdout)
    replaced = lock_of(project.git("show", "main:inventories/example/allocations.yaml").stdout)
    released = lock_of(project.lock())
    old, new = "dc1-r05-n07", "dc1-r05-n21"
    # Pull request 1: the new node is added, the old one keeps its /24 and address, nothing else moves.
    for section in ("pod_cidrs", "node_addresses", "fabric_links"):
        kept(base, replaced, section)
    assert set(replaced["pod_cidrs"]) - set(base["pod_cidrs"]) == {new}
    assert replaced["pod_cidrs"][new] != base["pod_cidrs"][old]
    assert replaced["node_addresses"][new] == "10.1.5.21"
    files = against(project, "main~1")["semantic"]["files"]
    assert {f.split("/")[1] for f in files["added"]} == {new} and {f.split("/")[1] for f in files["removed"]} == {old}
    assert sorted(files["changed"]) == ["ansible/hosts.yml", "control-plane/node-podcidrs.yaml",
                                        "spines/dc1-spine1/frr.conf", "spines/dc1-spine2/frr.conf",
                                        "tors/dc1-r05-tor/frr.conf"]
    # Pull request 2: release removes exactly the old node's two entries.
    freed = base["pod_cidrs"][old]
    for section in ("pod_cidrs", "node_addresses"):
        assert {k: v for k, v in replaced[section].items() if k != old} == released[section]
    assert freed not in {str(v) for v in released["pod_cidrs"].values()}
    assert capacity(project)["pools"]["total"]["free"] == 1024 - len(released["pod_cidrs"])
    sem = against(project, "main")["semantic"]
    assert sem["pods"] == {"allocated": {}, "released": {old: freed}}
    assert sem["empty"] is False and not sem["files"]["changed"] and not sem["files"]["added"]
    # "The next node added anywhere in the site takes it again": one more node in dc3 gets the freed /24.
    site = project.root / "inventories" / "example" / "site.yaml"
    text = site.read_text()
    group = "          - {count: 20, name_pattern: 'dc3-r12-n{index:02d}', hardware: amd-128c-512g}\n"
    assert group in text
    site.write_text(text.replace(group, group.replace("count: 20", "count: 21")))
    code, out, err = run_cli("check", str(site.parent), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["pending"]["pod_cidrs"] == {"dc3-r12-n21": freed}


def test_decommission_a_rack(tmp_path):
    project = run_page("decommission-a-rack.md", tmp_path)
    base = lock_of(project.git("show", "main~1:inventories/example/allocations.yaml").stdout)
    removed = lock_of(project.git("show", "main:inventories/example/allocations.yaml").stdout)
    released = lock_of(project.lock())
    gone = [f"dc1-r12-n{i:02d}" for i in range(1, 21)]
    # Pull request 1: every /24 and address kept (orphans included); only the ToR's two /31s freed.
    for section in ("pod_cidrs", "node_addresses"):
        assert removed[section] == base[section]
    assert {k for k in base["fabric_links"] if k not in removed["fabric_links"]} == {
        "dc1-spine1~dc1-r12-tor", "dc1-spine2~dc1-r12-tor"}
    kept(removed, base, "fabric_links")
    # Pull request 2: exactly the rack's nodes released, every other entry as it was.
    for section in ("pod_cidrs", "node_addresses"):
        assert released[section] == {k: v for k, v in base[section].items() if k not in gone}
    assert capacity(project)["pools"]["total"]["free"] == 1024 - 700
    files = against(project, "main~1")["semantic"]["files"]
    assert not files["added"] and {"/".join(f.split("/")[:2]) for f in files["removed"]} == {
        *(f"nodes/{n}" for n in gone), "tors/dc1-r12-tor"}
    spines = [f"spines/dc{d}-spine{k}/frr.conf" for d in (1, 2, 3) for k in (1, 2)]
    assert sorted(files["changed"]) == ["ansible/hosts.yml", "control-plane/node-podcidrs.yaml", *spines]
    sem = against(project, "main")["semantic"]
    assert sorted(sem["pods"]["released"]) == gone and not sem["files"]["changed"]
    # The proposed next rack of dc1 reuses the freed subnet and ASN.
    code, out, err = run_cli("capacity", str(project.root / "inventories" / "example"), "--add-racks", "dc1=1",
                             "--format", "json")
    assert code == 0, err
    (rack,) = json.loads(out)["whatif"]["synthetic_racks"]
    assert (rack["subnet"], rack["asn"]) == ("10.1.12.0/24", 65112)


def test_a_rack_with_a_vm_cannot_leave_first(tmp_path):
    """The page's precondition: validate refuses to drop a rack a VM hangs off, and names it."""
    project = Project.create(tmp_path)
    site = project.root / "inventories" / "example" / "site.yaml"
    text = site.read_text()
    start = text.index("      - name: dc1-r01\n")
    end = text.index("      - name: dc1-r02\n")
    site.write_text(text[:start] + text[end:])
    lock = project.lock()
    for command in ("validate", "render"):
        code, _out, err = run_cli(command, str(site.parent))
        assert code == 2, command
        assert "site.yaml:" in err and "dc1-r01" in err and "control-plane VM cp1" in err
    assert project.lock() == lock and not (project.root / "rendered").exists()  # nothing written
