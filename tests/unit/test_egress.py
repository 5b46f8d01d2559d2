"""Upstream routers in the site model: bad input is exit 2 with file:line, and the plan gives every spine its
upstream sessions from the locked fabric pool."""

from __future__ import annotations

from tests.helpers import run_cli


def _edit(site, old: str, new: str) -> None:
    path = site / "site.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_an_upstream_with_a_site_asn_is_refused_with_its_line(site_copy):
    site = site_copy("lab")
    _edit(site, "{name: dc1-border, router_id: 198.18.0.101, asn: 64900}",
          "{name: dc1-border, router_id: 198.18.0.101, asn: 65101}")
    before = (site / "allocations.yaml").read_bytes()
    code, _out, err = run_cli("validate", str(site))
    assert code == 2
    assert "site.yaml:" in err and "65101" in err and "dc1-border" in err, err
    assert (site / "allocations.yaml").read_bytes() == before


def test_accepting_a_site_prefix_from_an_upstream_is_refused(site_copy):
    site = site_copy("lab")
    _edit(site, "{name: dc2-border, router_id: 198.18.0.102, asn: 64900}",
          "{name: dc2-border, router_id: 198.18.0.102, asn: 64900, accept: [198.19.0.0/24]}")
    code, _, err = run_cli("validate", str(site))
    assert code == 2 and "would let it override" in err, err


def test_an_unknown_upstream_key_and_a_bad_class_are_refused(site_copy):
    site = site_copy("lab")
    _edit(site, "{name: dc3-border, router_id: 198.18.0.103, asn: 64900}",
          "{name: dc3-border, router_id: 198.18.0.103, asn: 64900, announce: [pods], peer: x}")
    code, _, err = run_cli("validate", str(site))
    assert code == 2 and "announce" in err and "peer" in err, err


def test_every_spine_peers_with_its_dcs_upstreams_over_locked_links():
    from provisioner.pipeline import compile_site
    from tests.conftest import LAB

    plan = compile_site(LAB).plan
    for spine in plan.spines:
        ups = [u for u in plan.upstreams if u.dc == spine.dc]
        assert {s.b.host for s in spine.uplinks} == {u.name for u in ups}
        for s in spine.uplinks:
            assert s.subnet.prefixlen == 31 and s.subnet.subnet_of(plan.site.address_plan.fabric_pool)
            assert plan.allocations.fabric_links[f"{spine.name}~{s.b.host}"] == s.subnet


def test_check_warns_about_a_dc_without_upstreams_and_errs_without_any(site_copy):
    import json
    import re

    site = site_copy("lab")
    path = site / "site.yaml"
    text = path.read_text()
    one_less = re.sub(r"    upstreams:[^\n]*\n      - \{name: dc2-border[^\n]*\n", "", text)
    assert one_less != text
    path.write_text(one_less)
    run_cli("render", str(site), "--out", str(site.parent / "out"))
    code, out, _ = run_cli("check", str(site), "--format", "json")
    ids = {(f["id"], tuple(f["objects"])) for f in json.loads(out)["findings"]}
    assert ("EGR001", ("dc2",)) in ids and code == 0
    none = re.sub(r"    upstreams:[^\n]*\n      - \{name: dc[0-9]-border[^\n]*\n", "", text)
    path.write_text(none)
    code, out, _ = run_cli("check", str(site), "--format", "json")
    assert any(f["id"] == "EGR002" for f in json.loads(out)["findings"]) and code == 1
