"""One set of limits: check and capacity share defaults, names, check.yaml and the checks themselves.

The agreement tests write capacity's synthetic racks into a real copy of the site, render it, and run
`provisioner check` on it: the LIM/CAP findings must be the ones capacity reported for the what-if.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from provisioner.limits import SPECS, Limits, spec_defaults_match
from tests.conftest import EXAMPLE
from tests.helpers import run_cli


def capacity_json(site: Path, *args: str) -> tuple[int, dict]:
    rc, out, err = run_cli("capacity", str(site), "--format", "json", *args)
    assert rc in (0, 1), err + out
    return rc, json.loads(out)


def check_json(site: Path, *args: str) -> tuple[int, dict]:
    rc, out, err = run_cli("check", str(site), "--format", "json", *args)
    assert rc in (0, 1), err + out
    return rc, json.loads(out)


def limit_ids(findings: list[dict]) -> set[tuple[str, tuple[str, ...]]]:
    return {(f["id"], tuple(f["objects"])) for f in findings if f["id"][:3] in ("LIM", "CAP") and not f["waived"]}


def write_racks(site_dir: Path, racks: list[dict]) -> None:
    """Write capacity's synthetic racks into site.yaml, as an SRE would after the what-if, and render."""
    text = (site_dir / "site.yaml").read_text()
    by_dc: dict[str, str] = {}
    for r in racks:
        by_dc[r["dc"]] = by_dc.get(r["dc"], "") + (
            f"      - name: {r['rack']}\n        asn: {r['asn']}\n        subnet: {r['subnet']}\n"
            f"        tor: {{name: {r['tor']}, router_id: {ipaddress.ip_network(r['subnet'])[254]}}}\n"
            f"        node_groups:\n          - {{count: {r['nodes']}, name_pattern: '{r['rack']}-n{{index:02d}}', "
            f"hardware: {r['hardware']}}}\n")
    for dc, block in by_dc.items():
        following = {"dc1": "  - name: dc2\n", "dc2": "  - name: dc3\n", "dc3": "vms:\n"}[dc]
        assert following in text
        text = text.replace(following, block + following, 1)
    (site_dir / "site.yaml").write_text(text)
    rc, out, err = run_cli("render", str(site_dir), "--out", str(site_dir.parent / "out"))
    assert rc == 0, err + out


def test_one_table_of_defaults_and_flags():
    assert spec_defaults_match()
    for command in ("check", "capacity"):
        rc, out, _ = run_cli(command, "--help")
        assert rc == 0
        for spec in SPECS:
            assert spec.flag in out, (command, spec.flag)
    _, cap = capacity_json(EXAMPLE)
    _, chk = check_json(EXAMPLE)
    assert cap["limits"] == Limits().as_dict()
    assert {k: v for k, v in chk["options"].items() if k != "locked"} == cap["limits"]


@pytest.mark.parametrize(("whatif", "flags", "check_yaml", "verdict"), [
    # 70-node racks: over the session limit and wider than the ECMP groups (the issue's case).
    (("--add-racks", "dc1=2", "--nodes-per-rack", "70"), (), None, "does not fit"),
    # 99.6% of the pool used: CAP001 warns, it still fits.
    (("--add-racks", "dc1=15"), (), None, "fits with warnings"),
    # check.yaml is honoured by both.
    (("--add-racks", "dc3=1"), (), "max_sessions_per_tor: 19\n", "does not fit"),
    # and so are flags.
    ((), ("--ecmp-max-width", "16", "--max-routes-per-spine", "700"), None, "does not fit"),
    ((), (), None, "fits"),
], ids=["70-node-racks", "pool-nearly-full", "check-yaml", "flags", "as-is"])
def test_capacity_and_check_agree(site_copy, whatif, flags, check_yaml, verdict):
    site_dir = site_copy("example")
    if check_yaml:
        (site_dir / "check.yaml").write_text(check_yaml)
    rc, cap = capacity_json(site_dir, *whatif, *flags)
    assert cap["verdict"] == verdict and rc == (1 if verdict == "does not fit" else 0)
    assert cap["fits"] is (verdict != "does not fit")
    if verdict == "fits with warnings":
        assert cap["warnings"] and not cap["reasons"]
    expected = limit_ids(cap["findings"])
    assert (verdict == "fits") == (not expected)
    write_racks(site_dir, cap["whatif"]["synthetic_racks"])
    _, chk = check_json(site_dir, *flags)
    assert limit_ids(chk["findings"]) == expected
    # The fabric table shows the same worst values check measured.
    failing = {i for i, _ in expected}
    for row in cap["fabric"]["checks"]:
        assert row["ok"] is (row["check"] not in failing), row


def test_issue_cases_by_message(site_copy):
    rc, out, _ = run_cli("capacity", str(EXAMPLE), "--add-racks", "dc1=2", "--nodes-per-rack", "70")
    lines = out.splitlines()
    assert rc == 1 and lines[0] == "DOES NOT FIT"
    assert "  - LIM001 dc1-new01-tor has 70 iBGP sessions (limit 48)" in lines
    assert any(line.startswith("  - LIM003 dc1-new01-tor has 70 announcers of 10.200.1.0/24") for line in lines)
    rc, out, _ = run_cli("capacity", str(EXAMPLE), "--add-racks", "dc1=15")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "FITS WITH WARNINGS"
    assert lines[1].startswith("  - warning: CAP001 pod pool pods-a (10.100.0.0/14) has 4 free /24 of 1024")


def test_max_racks(site_copy):
    rc, data = capacity_json(EXAMPLE, "--max-racks", "dc1")
    assert rc == 0
    m = data["max_racks"]
    assert m["dc"] == "dc1" and m["nodes_per_rack"] == 20
    # 304 free /24s: 15 racks of 20 fit (4 left, below the 20 of headroom: a warning), the 16th does not.
    assert m["racks"] == 15 and data["verdict"] == "fits with warnings"
    assert any("pod pools exhausted" in r for r in m["next_rack_fails_because"])
    assert capacity_json(EXAMPLE, "--add-racks", "dc1=15")[0] == 0
    assert capacity_json(EXAMPLE, "--add-racks", "dc1=16")[0] == 1
    # With 70-node racks not even one fits (sessions and ECMP), and the reason says so.
    rc, data = capacity_json(EXAMPLE, "--max-racks", "dc2", "--nodes-per-rack", "70")
    assert rc == 0 and data["max_racks"]["racks"] == 0
    assert {r.split()[0] for r in data["max_racks"]["next_rack_fails_because"]} == {"LIM001", "LIM003"}
    rc, out, _ = run_cli("capacity", str(EXAMPLE), "--max-racks", "dc2", "--nodes-per-rack", "30")
    assert rc == 0 and out.splitlines()[0].endswith(": 10 more racks of 30 nodes fit in dc2")


def test_max_racks_bad_dc_exit_2():
    rc, _, err = run_cli("capacity", str(EXAMPLE), "--max-racks", "dc9")
    assert rc == 2 and "unknown data centre 'dc9'" in err
