"""plan --against as a reviewer reads it: parameter-level changes, and a PR comment that always fits GitHub.

The four changes of the issue (BGP timers, anycast renumbering, an added rack, a moved control-plane VM)
each produce a markdown comment under GitHub's 65,536 characters whose summary names the change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from provisioner.comment import GITHUB_LIMIT
from tests.conftest import EXAMPLE
from tests.helpers import run_cli
from tests.review_scenarios import SCENARIOS, prepare

EXPECTED_LINES = {
    "timers": ["- `bgp.hold_time`: 9 -> 6 (807 sessions, 765 files)",
               "- `bgp.keepalive`: 3 -> 2 (807 sessions, 765 files)"],
    "anycast": ["- `address_plan.anycast`: [10.200.1.0/24] -> [10.200.9.0/24] (720 sessions, 1,483 files)"],
    "rack": ["- `dcs[dc2].racks`: +1 rack added (dc2-r13) (22 sessions, 105 files)"],
    "cp-move": ["- `vms.control_plane[cp1].rack`: dc1-r01 -> dc1-r03 (2 sessions, 6 files)",
                "- `vms.control_plane[cp1].address`: 10.1.1.201 -> 10.1.3.210 (2 sessions, 6 files)"],
}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("review")
    return {name: prepare(tmp, name) for name in SCENARIOS}


def plan(site: Path, *args: str) -> str:
    code, out, err = run_cli("plan", str(site), "--against", str(EXAMPLE), *args)
    assert code == 0, err
    return out


def summary_of(comment: str) -> str:
    return comment.split("#### Check findings")[0]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_comment_fits_and_names_the_change(sites, name):
    comment = plan(sites[name], "--format", "markdown")
    assert len(comment) <= GITHUB_LIMIT
    summary = summary_of(comment)
    assert "#### What changes" in summary
    for line in EXPECTED_LINES[name]:
        assert line in summary.splitlines(), (line, summary[:3000])
    # Well-formed markdown whatever was cut: fences and <details> are balanced.
    assert comment.count("```") % 2 == 0
    assert comment.count("<details>") == comment.count("</details>")
    # The diagram is there and small, whatever the size of the change.
    diagram = re.search(r"```mermaid\n(.*?)```", comment, flags=re.S)
    assert diagram and len(diagram.group(1)) < 8_000


def test_timer_change_is_a_change_of_every_session(sites):
    _, out, _ = run_cli("plan", str(sites["timers"]), "--against", str(EXAMPLE), "--format", "json")
    sem = json.loads(out)["semantic"]
    assert len(sem["sessions"]["changed"]) == 807
    ch = sem["sessions"]["changed"]["node-tor dc1-r01-n01~dc1-r01-tor"]
    assert ch == {"bgp.hold_time": ["9", "6"], "bgp.keepalive": ["3", "2"]}
    params = {p["pattern"]: p for p in sem["parameters"]}
    assert params["bgp.hold_time"] | {"paths": None, "objects": None, "line": None} == {
        "pattern": "bgp.hold_time", "kind": "changed", "old": "9", "new": "6", "count": 1, "object": "site",
        "paths": None, "objects": None, "line": None, "sessions": 807, "files": 765}
    # The grouped session list in the comment is one line, not 807.
    comment = plan(sites["timers"], "--format", "markdown")
    assert "~ node-tor x720 (dc1-r01-n01~dc1-r01-tor, dc1-r01-n02~dc1-r01-tor …): bgp.hold_time 9 -> 6; " \
           "bgp.keepalive 3 -> 2" in comment
    assert "~ nodes/*/bird.conf x720" in comment


def test_text_summary_leads_with_parameters(sites):
    out = plan(sites["cp-move"])
    lines = out.splitlines()
    start = lines.index("semantic summary:")
    assert lines[start + 1] == "  vms.control_plane[cp1].rack: dc1-r01 -> dc1-r03 (2 sessions, 6 files)"


def test_identical_changes_on_many_racks_are_one_line(site_copy):
    site = site_copy("example")
    path = site / "site.yaml"
    text = re.sub(r"(\n        asn: 651\d\d\n)", r"\1        aggregate_pods: true\n", path.read_text())
    path.write_text(text)
    out = plan(site, "--format", "json")
    params = json.loads(out)["semantic"]["parameters"]
    assert [p["line"] for p in params] == [
        "dcs[*].racks[*].aggregate_pods: false -> true on 12 racks (dc1-r01, dc1-r02, dc1-r03, dc1-r04 and 8 more) "
        "(14 files)"]  # the ToRs' frr.conf and dc1's spines' FROM-<tor> lists; no session parameter changes
    assert params[0]["count"] == 12 and len(params[0]["paths"]) == 12


def test_many_different_values_collapse_per_field(site_copy):
    """Renumbering every router id: 42 different changes, two summary lines, still a full summary."""
    site = site_copy("example")
    path = site / "site.yaml"
    path.write_text(path.read_text().replace("router_id: 10.254.", "router_id: 10.253."))
    comment = plan(site, "--format", "markdown")
    assert len(comment) <= GITHUB_LIMIT
    summary = summary_of(comment)
    assert "- `dcs[*].racks[*].tor.router_id`: changed on 36 racks, 36 different values" in summary
    assert "- `dcs[*].spines[*].router_id`: changed on 6 spines, 6 different values" in summary


def test_details_dir_holds_everything(sites, tmp_path):
    out_dir = tmp_path / "details"
    comment = plan(sites["anycast"], "--format", "markdown", "--details-dir", str(out_dir),
                   "--details-url", "https://ci.example.org/run/1")
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["comment.md", "plan.json", "diff.patch", "parameters.txt", "sessions.txt", "nodes.txt", "files.txt",
         "findings.txt"])
    assert (out_dir / "comment.md").read_text() == comment
    full_diff = plan(sites["anycast"], "--diff").split("\n--- a/", 1)[1]
    assert (out_dir / "diff.patch").read_text().endswith(full_diff)
    assert len((out_dir / "diff.patch").read_text()) > 8 * GITHUB_LIMIT  # what the comment could not hold
    assert "[complete lists](https://ci.example.org/run/1)" in comment
    files = (out_dir / "files.txt").read_text().split("\ngrouped:\n")[0].splitlines()
    # every node's bird.conf and its health checks (each anycast range has its own check)
    assert len([f for f in files if f.startswith("~ nodes/")]) == 1440
    data = json.loads((out_dir / "plan.json").read_text())
    assert data["diff"] == (out_dir / "diff.patch").read_text()


def test_details_options_need_against():
    code, _, err = run_cli("plan", str(EXAMPLE), "--details-dir", "/tmp/x")
    assert code == 2 and "only apply with --against" in err
