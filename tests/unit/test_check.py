"""provisioner check: a corpus of loadable-but-wrong sites, one mistake each, each caught by exactly its ID.

Two kinds of corpus case:

- site variants: a copy of the lab or example site with one edit to site.yaml (or one limit on the command
  line); these go through the real CLI with ``--format json``;
- Plan variants: faults that load (rightly) refuses or that the Plan cannot express from any site.yaml,
  because both ends of a session come from one object. They are built with ``dataclasses.replace`` on the
  lab Plan, the way a future bug in plan.py or a hand-edited config would look.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from provisioner.check import CHECKS, CheckOptions, Waiver, run_checks
from provisioner.etcd_timing import Timing
from provisioner.ipam import Allocations, allocate, dump_lock, read_lock
from provisioner.load import load_site
from provisioner.pipeline import compile_site
from provisioner.plan import EtcdMember, Plan, Session
from tests.conftest import EXAMPLE, LAB
from tests.helpers import run_cli

# --- helpers ----------------------------------------------------------------------------------


def edit_site(site_dir: Path, fn: Callable[[dict], None]) -> Path:
    path = site_dir / "site.yaml"
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return site_dir


def relock(site_dir: Path) -> None:
    """Rewrite the lock as `render` + `release` of every removed node would: it agrees with site.yaml."""
    site, source, _ = load_site(site_dir)
    lock = read_lock(source)
    live = {n.hostname for dc in site.dcs for r in dc.racks for n, _ in r.expanded_nodes()}
    lock = Allocations({k: v for k, v in lock.pod_cidrs.items() if k in live},
                       {k: v for k, v in lock.node_addresses.items() if k in live}, dict(lock.fabric_links))
    allocs, _ = allocate(site, lock)
    source.lock_file.write_text(dump_lock(site.site, allocs))


def ids_of(findings) -> set[str]:
    return {f.id for f in findings if not f.waived}


def cli_check(site_dir: Path, *flags: str) -> tuple[int, dict]:
    code, out, err = run_cli("check", str(site_dir), "--format", "json", *flags)
    assert code in (0, 1), err
    return code, json.loads(out)


def cli_ids(data: dict) -> set[str]:
    return {f["id"] for f in data["findings"] if not f["waived"]}


def dc(data: dict, name: str) -> dict:
    return next(d for d in data["dcs"] if d["name"] == name)


def rack(data: dict, name: str) -> dict:
    return next(r for d in data["dcs"] for r in d["racks"] if r["name"] == name)


# --- site variants (real site.yaml edits) ------------------------------------------------------


def lab_dc3_single_announcer(d: dict) -> None:
    rack(d, "dc3-r1")["nodes"] = rack(d, "dc3-r1")["nodes"][:1]
    rack(d, "dc3-r2")["nodes"] = []


def lab_two_dcs(d: dict) -> None:
    d["dcs"] = [x for x in d["dcs"] if x["name"] != "dc3"]
    for role in ("control_plane", "etcd", "etcd_events"):
        d["vms"][role] = [v for v in d["vms"][role] if v["dc"] != "dc3"]


def lab_no_cp_in_dc3(d: dict) -> None:
    d["vms"]["control_plane"] = [v for v in d["vms"]["control_plane"] if v["dc"] != "dc3"]


def lab_dc2_without_upstreams(d: dict) -> None:
    dc(d, "dc2")["upstreams"] = []


def lab_without_upstreams(d: dict) -> None:
    for x in d["dcs"]:
        x["upstreams"] = []


def lab_max_prefix_one(d: dict) -> None:
    d["bgp"]["tor_max_prefix_per_node"] = 1


def lab_node_removed(d: dict) -> None:
    rack(d, "dc1-r1")["nodes"].pop()


def lab_node_added_no_lock(d: dict) -> None:
    rack(d, "dc1-r1")["nodes"].append({"hostname": "dc1-r1-n3", "address": "198.18.11.3",
                                       "hardware": "amd-128c-512g"})


SITE_CASES = [
    # (case id, base site, site.yaml edit, rewrite the lock to agree, CLI flags, expected IDs)
    ("anycast-one-announcer-in-dc", "lab", lab_dc3_single_announcer, True, (), {"ANY001"}),
    ("anycast-min-above-dc-size", "lab", None, False, ("--anycast-min-announcers", "5"), {"ANY001"}),
    ("etcd-even-members", "lab", lab_two_dcs, True, (), {"ETC001"}),
    ("dc-without-control-plane", "lab", lab_no_cp_in_dc3, True, (), {"CPL001"}),
    ("dc-without-upstreams", "lab", lab_dc2_without_upstreams, True, (), {"EGR001"}),
    ("site-without-upstreams", "lab", lab_without_upstreams, True, (), {"EGR002"}),
    ("max-prefix-below-announcements", "lab", lab_max_prefix_one, False, (), {"LIM004"}),
    ("orphaned-node", "lab", lab_node_removed, False, (), {"LCK001"}),
    ("lock-missing-allocation", "lab", lab_node_added_no_lock, False, ("--locked",), {"LCK002"}),
    ("pool-headroom", "example", None, False, ("--min-free-per-pool", "400"), {"CAP001"}),
    ("tor-sessions-over-limit", "example", None, False, ("--max-sessions-per-tor", "20"), {"LIM001"}),
    ("tor-routes-over-limit", "example", None, False, ("--max-routes-per-tor", "500"), {"LIM002"}),
    ("ecmp-narrower-than-announcers", "example", None, False, ("--ecmp-max-width", "16"), {"LIM003"}),
    ("spine-routes-over-limit", "example", None, False, ("--max-routes-per-spine", "500"), {"LIM005"}),
]


@pytest.mark.parametrize(("base", "edit", "lock", "flags", "expected"), [c[1:] for c in SITE_CASES],
                         ids=[c[0] for c in SITE_CASES])
def test_site_corpus(site_copy, base, edit, lock, flags, expected):
    site_dir = site_copy(base)
    if edit is not None:
        edit_site(site_dir, edit)
    if lock:
        relock(site_dir)
    code, data = cli_check(site_dir, *flags)
    assert cli_ids(data) == expected, [f["message"] for f in data["findings"]]
    errors = any(CHECKS[i].severity == "error" for i in expected)
    assert code == (1 if errors else 0)


# --- Plan variants ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_plan() -> Plan:
    return compile_site(LAB).plan


def node(plan: Plan, host: str):
    return next(n for n in plan.nodes if n.hostname == host)


def tor(plan: Plan, name: str):
    return next(t for t in plan.tors if t.name == name)


def replace_node(plan: Plan, host: str, **changes) -> Plan:
    return replace(plan, nodes=tuple(replace(n, **changes) if n.hostname == host else n for n in plan.nodes))


def replace_tor(plan: Plan, name: str, **changes) -> Plan:
    return replace(plan, tors=tuple(replace(t, **changes) if t.name == name else t for t in plan.tors))


def tor_clients(plan: Plan, name: str, fn: Callable[[tuple[Session, ...]], tuple[Session, ...]]) -> Plan:
    return replace_tor(plan, name, clients=fn(tor(plan, name).clients))


def swap_session(plan: Plan, old: Session, new: Session) -> Plan:
    """Replace one session object everywhere the Plan holds it: both ends and the session list."""
    def sub(ss):
        return tuple(new if s == old else s for s in ss)

    plan = replace(plan, sessions=sub(plan.sessions))
    plan = replace(plan, nodes=tuple(replace(n, session=new) if n.session == old else n for n in plan.nodes))
    return replace(plan, tors=tuple(replace(t, clients=sub(t.clients)) for t in plan.tors))


def set_pod(plan: Plan, host: str, net: IPv4Network, lock: bool = True) -> Plan:
    n = node(plan, host)
    old = n.session
    new = replace(old, a_announces=(net, *plan.anycast))
    plan = swap_session(plan, old, new)
    plan = replace_node(plan, host, pod_cidr=net)
    if lock:
        pods = dict(plan.allocations.pod_cidrs)
        pods[host] = net
        plan = replace(plan, allocations=replace(plan.allocations, pod_cidrs=pods))
    return plan


def set_vm_address(plan: Plan, name: str, address: str) -> Plan:
    return replace(plan, vms=tuple(replace(v, address=IPv4Address(address)) if v.name == name else v
                                   for v in plan.vms))


def set_members(plan: Plan, cluster: str, members: list[tuple[str, str, str]]) -> Plan:
    ms = tuple(EtcdMember(name, dc_, rack_, IPv4Address(f"10.99.0.{i + 1}"))
               for i, (name, dc_, rack_) in enumerate(members))
    c = plan.etcd if cluster == "etcd" else plan.etcd_events
    c = replace(c, members=ms)
    return replace(plan, **{"etcd" if cluster == "etcd" else "etcd_events": c})


def p_node_missing(p: Plan) -> Plan:  # ToR still peers with a node that is gone
    return replace(p, nodes=tuple(n for n in p.nodes if n.hostname != "dc1-r1-n2"))


def p_tor_lacks_client(p: Plan) -> Plan:
    return tor_clients(p, "dc1-r1-tor", lambda cs: tuple(c for c in cs if c.a.host != "dc1-r1-n2"))


def p_tor_duplicate_client(p: Plan) -> Plan:
    return tor_clients(p, "dc1-r1-tor", lambda cs: (*cs, cs[0]))


def p_asn_mismatch(p: Plan) -> Plan:
    return tor_clients(p, "dc2-r1-tor", lambda cs: tuple(replace(c, a=replace(c.a, asn=65999))
                                                         if c.a.host == "dc2-r1-n1" else c for c in cs))


def p_not_in_subnet(p: Plan) -> Plan:
    old = node(p, "dc1-r2-n1").session
    return swap_session(p, old, replace(old, subnet=IPv4Network("10.9.9.0/24")))


def p_not_mirrored(p: Plan) -> Plan:
    return tor_clients(p, "dc1-r1-tor", lambda cs: tuple(
        replace(c, a=replace(c.a, address=c.a.address + 100)) if c.a.host == "dc1-r1-n1" else c for c in cs))


def p_spine_lacks_downlink(p: Plan) -> Plan:
    return replace(p, spines=tuple(replace(s, downlinks=s.downlinks[1:]) if s.name == "dc2-spine1" else s
                                   for s in p.spines))


def p_duplicate_pod(p: Plan) -> Plan:
    return set_pod(p, "dc2-r1-n2", node(p, "dc2-r1-n1").pod_cidr)


def p_vm_inside_pod(p: Plan) -> Plan:
    return set_vm_address(p, "etcd1", str(node(p, "dc1-r1-n1").pod_cidr.network_address + 5))


def p_pod_outside_pool(p: Plan) -> Plan:
    return set_pod(p, "dc3-r1-n1", IPv4Network("10.150.0.0/24"))


def p_router_id_is_node_address(p: Plan) -> Plan:  # load refuses this; a hand-made Plan must not slip by
    return replace_tor(p, "dc1-r1-tor", router_id=node(p, "dc1-r1-n2").address)


def p_duplicate_address(p: Plan) -> Plan:
    return set_vm_address(p, "etcd1", str(node(p, "dc1-r2-n1").address))


def p_node_exports_foreign_pod(p: Plan) -> Plan:
    n = node(p, "dc1-r1-n1")
    hijack = node(p, "dc2-r1-n1").pod_cidr
    return replace_node(p, n.hostname, session=replace(n.session, a_announces=(*n.session.a_announces, hijack)))


def p_tor_drops_anycast(p: Plan) -> Plan:
    return tor_clients(p, "dc3-r2-tor", lambda cs: tuple(
        replace(c, a_announces=c.a_announces[:1]) if c.a.host == "dc3-r2-n2" else c for c in cs))


def p_cp_announces_pod(p: Plan) -> Plan:
    vm = next(v for v in p.vms if v.name == "cp2")
    bad = replace(vm.session, a_announces=(*vm.session.a_announces, IPv4Network("198.19.5.0/24")))
    return replace(p, vms=tuple(replace(v, session=bad) if v.name == "cp2" else v for v in p.vms))


def p_dc_majority(p: Plan) -> Plan:
    return set_members(p, "etcd", [("etcd1", "dc1", "dc1-r2"), ("etcd2", "dc2", "dc2-r2"), ("etcd3", "dc1", "dc1-r1")])


def p_shared_rack(p: Plan) -> Plan:
    return set_members(p, "etcd-events", [("e1", "dc1", "dc1-r1"), ("e2", "dc1", "dc1-r1"), ("e3", "dc2", "dc2-r1"),
                                          ("e4", "dc2", "dc2-r2"), ("e5", "dc3", "dc3-r1")])


def p_uneven_spread(p: Plan) -> Plan:
    return set_members(p, "etcd", [(f"m{i}", dc_, f"{dc_}-x{i}") for i, dc_ in
                                   enumerate(["dc1", "dc1", "dc1", "dc2", "dc2", "dc2", "dc3"])])


def p_bad_timing(p: Plan) -> Plan:
    return replace(p, etcd=replace(p.etcd, timing=Timing(heartbeat_ms=1000, election_ms=1000)))


def p_plan_moves_locked_pod(p: Plan) -> Plan:
    return set_pod(p, "dc2-r2-n1", IPv4Network("198.19.30.0/24"), lock=False)


PLAN_CASES = [
    ("bgp-other-end-missing", p_node_missing, {"BGP001"}),
    ("bgp-half-open-tor", p_tor_lacks_client, {"BGP002"}),
    ("bgp-half-open-spine", p_spine_lacks_downlink, {"BGP002"}),
    ("bgp-session-duplicated", p_tor_duplicate_client, {"BGP003"}),
    ("bgp-asn-mismatch", p_asn_mismatch, {"BGP004"}),
    ("bgp-not-in-one-subnet", p_not_in_subnet, {"BGP005"}),
    ("bgp-address-not-mirrored", p_not_mirrored, {"BGP006"}),
    ("pod-duplicated", p_duplicate_pod, {"PFX001"}),
    ("vm-address-inside-pod-prefix", p_vm_inside_pod, {"PFX002"}),
    ("pod-outside-pool", p_pod_outside_pool, {"PFX003"}),
    ("address-duplicated", p_duplicate_address, {"ADR001"}),
    ("router-id-equals-node-address", p_router_id_is_node_address, {"ADR002"}),
    ("node-exports-foreign-pod", p_node_exports_foreign_pod, {"EXP001"}),
    ("vm-exports-pod", p_cp_announces_pod, {"EXP001"}),
    ("tor-filter-drops-anycast", p_tor_drops_anycast, {"EXP002"}),
    ("etcd-dc-majority", p_dc_majority, {"ETC003"}),
    ("etcd-uneven-spread", p_uneven_spread, {"ETC002"}),
    ("etcd-shared-rack", p_shared_rack, {"ETC004"}),
    ("etcd-timing", p_bad_timing, {"ETC005"}),
    ("plan-disagrees-with-lock", p_plan_moves_locked_pod, {"LCK003"}),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES])
def test_plan_corpus(lab_plan, mutate, expected):
    findings = run_checks(mutate(lab_plan), CheckOptions())
    assert ids_of(findings) == expected, [str(f) for f in findings]


def test_corpus_size_and_coverage():
    assert len(SITE_CASES) + len(PLAN_CASES) >= 20
    covered = {i for c in SITE_CASES for i in c[-1]} | {i for c in PLAN_CASES for i in c[-1]}
    assert covered >= {i for i in CHECKS if not i.startswith("WVR")}


@pytest.mark.parametrize("site", [EXAMPLE, LAB], ids=["example", "lab"])
def test_inventories_pass_clean(site):
    code, out, err = run_cli("check", str(site), "--format", "json")
    assert code == 0, out + err
    data = json.loads(out)
    assert data["findings"] == []
    assert data["summary"] == {"errors": 0, "warnings": 0, "waived": 0}


def test_session_checks_on_example_scale():
    """A session broken at the far end of the 720-node site is found, and only that one."""
    plan = compile_site(EXAMPLE).plan
    plan = tor_clients(plan, "dc3-r12-tor", lambda cs: cs[:-1])
    findings = run_checks(plan)
    assert [(f.id, f.objects[0]) for f in findings] == [("BGP002", "dc3-r12-n20")]


# --- formats and exit codes ------------------------------------------------------------------


def test_text_format_and_exit_code(site_copy):
    site_dir = site_copy("lab")
    code, out, _ = run_cli("check", str(site_dir), "--anycast-min-announcers", "5")
    assert code == 1
    assert out.splitlines()[0] == "check lab: 3 errors, 0 warnings, 0 waived"
    assert "ERROR  ANY001  198.19.200.0/24, dc1: anycast 198.19.200.0/24 has 4 announcers in dc1" in out
    assert "hint:" in out


def test_markdown_format(site_copy):
    code, out, _ = run_cli("check", str(site_copy("lab")), "--format", "markdown", "--ecmp-max-width", "1")
    assert code == 1
    assert out.startswith("### provisioner check: `lab`")
    assert ":x: **check failed**" in out
    assert "| :x: error | `LIM003` |" in out
    code, out, _ = run_cli("check", str(LAB), "--format", "markdown")
    assert code == 0 and ":white_check_mark: **check passed**" in out


def test_warnings_only_exit_zero(site_copy):
    site_dir = edit_site(site_copy("lab"), lab_node_removed)
    code, data = cli_check(site_dir)
    assert code == 0 and cli_ids(data) == {"LCK001"}
    assert data["findings"][0]["severity"] == "warning"


def test_check_yaml_options(site_copy):
    site_dir = site_copy("example")
    (site_dir / "check.yaml").write_text("min_free_per_pool: 400\necmp_max_width: 64\n")
    code, data = cli_check(site_dir)
    assert cli_ids(data) == {"CAP001"} and code == 0
    assert data["options"]["min_free_per_pool"] == 400
    code, data = cli_check(site_dir, "--min-free-per-pool", "10")  # the flag wins over the file
    assert cli_ids(data) == set()


@pytest.mark.parametrize(("text", "needle"), [
    ("anycast_min: 3\n", "check.yaml:1: anycast_min: unknown key 'anycast_min'"),
    ("ecmp_max_width: 0\n", "check.yaml:1: ecmp_max_width: Input should be greater than or equal to 1"),
    ("max_routes_per_tor: lots\n", "max_routes_per_tor: Input should be a valid integer (got str 'lots')"),
    ("max_routes_per_tor: null\n", "max_routes_per_tor: Input should be a valid integer"),
    ("ecmp_max_width: true\n", "ecmp_max_width: Input should be a valid integer (got bool True)"),
    ("[1, 2]\n", "check.yaml:1: must be a mapping"),
])
def test_check_yaml_errors_exit_2(site_copy, text, needle):
    site_dir = site_copy("lab")
    (site_dir / "check.yaml").write_text(text)
    code, _, err = run_cli("check", str(site_dir))
    assert code == 2 and needle in err, err


def test_bad_flag_is_usage_error():
    code, _, _ = run_cli("check", str(LAB), "--ecmp-max-width", "0")
    assert code == 2


# --- waivers ---------------------------------------------------------------------------------

WAIVERS = """\
# Reviewed in PR #123.
waivers:
  - id: ANY001
    object: dc3
    reason: dc3 is being built; two racks arrive next month
    reviewed_by: netops
  - id: LIM003
    object: dc1-r01-tor
    reason: never matches on the lab
"""


def test_waiver_accepts_finding_and_stale_waiver_warns(site_copy):
    site_dir = edit_site(site_copy("lab"), lab_dc3_single_announcer)
    relock(site_dir)
    (site_dir / "waivers.yaml").write_text(WAIVERS)
    code, data = cli_check(site_dir)
    assert code == 0  # the only error is waived; the stale waiver is a warning
    waived = [f for f in data["findings"] if f["waived"]]
    assert [(f["id"], f["waiver_reason"]) for f in waived] == [
        ("ANY001", "dc3 is being built; two racks arrive next month (reviewed by netops)")]
    assert cli_ids(data) == {"WVR001"}
    stale = next(f for f in data["findings"] if f["id"] == "WVR001")
    assert "waivers.yaml:7" in stale["message"] and stale["objects"] == ["LIM003", "dc1-r01-tor"]
    assert data["summary"] == {"errors": 0, "warnings": 1, "waived": 1}
    code, out, _ = run_cli("check", str(site_dir))
    assert "WAIVED ANY001" in out and "waived: dc3 is being built" in out


def test_waiver_by_object_only_waives_that_object(site_copy):
    site_dir = site_copy("lab")
    (site_dir / "waivers.yaml").write_text(
        "waivers:\n  - {id: ANY001, object: dc1, reason: accepted}\n")
    code, data = cli_check(site_dir, "--anycast-min-announcers", "5")
    assert code == 1
    assert sorted((f["objects"][1], f["waived"]) for f in data["findings"] if f["id"] == "ANY001") == [
        ("dc1", True), ("dc2", False), ("dc3", False)]


def test_expired_waiver_no_longer_applies(lab_plan):
    plan = p_asn_mismatch(lab_plan)
    w = Waiver("BGP004", "dc2-r1-tor", "temporary", expires=date(2024, 1, 31), where="waivers.yaml:3")
    findings = run_checks(plan, CheckOptions(today=date(2024, 2, 1)), [w])
    assert sorted(f.id for f in findings) == ["BGP004", "WVR002"]
    assert not any(f.waived for f in findings)
    findings = run_checks(plan, CheckOptions(today=date(2024, 1, 31)), [w])
    assert [(f.id, f.waived) for f in findings] == [("BGP004", True)]


@pytest.mark.parametrize(("text", "needle"), [
    ("waivers:\n  - {id: ANY001, object: dc1}\n",
     "waivers.yaml:2: waivers[0].reason: required key 'reason' is missing"),
    ("waivers:\n  - id: ANY001\n    object: dc1\n    reason: x\n    owner: me\n",
     "waivers.yaml:5: waivers[0].owner: unknown key 'owner'"),
    ("waivers:\n  - {id: XYZ999, object: dc1, reason: x}\n",
     "waivers.yaml:2: waivers[0].id: unknown check ID 'XYZ999'"),
    ("waivers:\n  - {id: ANY001, object: dc1, reason: x, expires: soon}\n",
     "waivers[0].expires: must be a date (YYYY-MM-DD)"),
    ("waivers:\n  - {id: ANY001, object: dc1, reason: x, expires: 2030-01-01 10:00}\n", "expires: must be a date"),
    ("waivers:\n  - {id: ANY001, object: '  ', reason: x}\n", "waivers[0].object: must be a non-empty string"),
    ("waivers: {id: ANY001}\n", "waivers.yaml:1: waivers: Input should be a valid list"),
    ("accept:\n  - {id: ANY001}\n", "waivers.yaml:1: accept: unknown key 'accept' (known: waivers)"),
    ("waivers:\n  - just a string\n", "waivers.yaml:2: waivers[0]: must be a mapping (got str 'just a string')"),
])
def test_malformed_waivers_exit_2(site_copy, text, needle):
    site_dir = site_copy("lab")
    (site_dir / "waivers.yaml").write_text(text)
    code, _, err = run_cli("check", str(site_dir))
    assert code == 2
    assert needle in err, err


def test_every_bad_waiver_and_limit_is_reported_at_once(site_copy):
    # Like site.yaml: one run names every problem of the file, each with its line, not just the first.
    site_dir = site_copy("lab")
    (site_dir / "waivers.yaml").write_text(
        "waivers:\n"
        "  - {id: ANY00, object: dc1, reason: x}\n"
        "  - {id: ANY001, object: dc1, reason: x, expires: soon}\n"
        "  - {id: ANY001, object: dc1}\n")
    code, _, err = run_cli("check", str(site_dir))
    assert code == 2
    for needle in ("waivers.yaml:2: waivers[0].id: unknown check ID 'ANY00'; did you mean 'ANY001'?",
                   "waivers.yaml:3: waivers[1].expires: must be a date",
                   "waivers.yaml:4: waivers[2].reason: required key 'reason' is missing"):
        assert needle in err, err
    (site_dir / "waivers.yaml").unlink()
    (site_dir / "check.yaml").write_text("ecmp_max_width: 0\nmax_sessions_per_tor: many\nanycast_min: 2\n")
    code, _, err = run_cli("check", str(site_dir))
    assert code == 2
    for needle in ("check.yaml:1: ecmp_max_width:", "check.yaml:2: max_sessions_per_tor:",
                   "check.yaml:3: anycast_min: unknown key 'anycast_min'; did you mean 'anycast_min_announcers'?"):
        assert needle in err, err


def test_pending_allocations_are_not_errors(site_copy):
    """check before render: a new node is allocated in memory, checked, and listed as pending (exit 0)."""
    site_dir = site_copy("lab")
    edit_site(site_dir, lab_node_added_no_lock)
    code, data = cli_check(site_dir)
    assert code == 0 and data["findings"] == []
    assert list(data["pending"]["pod_cidrs"]) == ["dc1-r1-n3"]
    code, out, _ = run_cli("check", str(site_dir))
    assert code == 0
    assert "pending: 1 pod prefix allocated in memory; `provisioner render` writes them" in out
    assert "dc1-r1-n3  198.19." in out
    # In CI the lock must be committed with the change.
    code, data = cli_check(site_dir, "--locked")
    assert code == 1 and cli_ids(data) == {"LCK002"} and data["pending"] == {}
    # After render there is nothing pending.
    assert run_cli("render", str(site_dir), "--out", str(site_dir.parent / "out"))[0] == 0
    code, data = cli_check(site_dir, "--locked")
    assert code == 0 and data["pending"] == {} and data["findings"] == []
