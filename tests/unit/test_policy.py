"""Route-policy tests over the rendered lab configs, the way Batfish's testRoutePolicies works.

Expected verdicts come from the Plan (what the design says); verdicts come from tests/frr_policy.py
reading the rendered FRR text of ToRs and spines (what ships). Mutation tests prove the evaluator can fail.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from provisioner.pipeline import compile_site
from provisioner.plan import Plan
from provisioner.render import render
from tests.conftest import LAB
from tests.frr_policy import FrrConfig, PolicyParseError

DEFAULT = IPv4Network("0.0.0.0/0")


@pytest.fixture(scope="module")
def lab() -> tuple[Plan, dict[str, str]]:
    plan = compile_site(LAB).plan
    return plan, render(plan)


def too_specific(net: IPv4Network) -> IPv4Network:
    return next(net.subnets(prefixlen_diff=1))


def test_lab_has_what_the_policy_tests_cover(lab):
    plan, artifacts = lab
    assert len(plan.nodes) == 12 and len(plan.tors) == 6 and len(plan.control_plane) == 3
    assert all(f"nodes/{n.hostname}/bird.conf" in artifacts for n in plan.nodes)
    assert all(f"tors/{t.name}/frr.conf" in artifacts for t in plan.tors)


def test_every_tor_neighbour_filter_accepts_only_that_sessions_announcements(lab):
    plan, artifacts = lab
    all_pods = [n.pod_cidr for n in plan.nodes]
    checked = 0
    for tor in plan.tors:
        cfg = FrrConfig.parse(artifacts[f"tors/{tor.name}/frr.conf"])
        for s in tor.clients:
            peer = str(s.a.address)
            own = set(s.a_announces)
            cases: dict[IPv4Network, bool] = {p: True for p in own}
            cases.update({p: False for p in all_pods if p not in own})  # every other node's /24
            cases[DEFAULT] = False
            for anycast in plan.anycast:
                cases[anycast] = anycast in own  # CP VMs announce the API /32 only
                cases[too_specific(anycast)] = False
            cases[IPv4Network(f"{plan.api_address}/32")] = s.kind == "vm-tor"
            for prefix, expected in cases.items():
                d = cfg.evaluate(peer, "in", prefix)
                assert d.accepted is expected, f"{tor.name} from {s.a.host} {prefix}: {d.reason}"
            # to the servers: only the default route
            assert not cfg.evaluate(peer, "out", s.a_announces[0]).accepted
            assert cfg.evaluate(peer, "out", DEFAULT).accepted
            checked += 1
    assert checked == len(plan.nodes) + len(plan.control_plane)


def test_tor_uplinks_announce_the_rack_and_nothing_foreign(lab):
    plan, artifacts = lab
    for tor in plan.tors:
        cfg = FrrConfig.parse(artifacts[f"tors/{tor.name}/frr.conf"])
        mine = {n.pod_cidr for n in plan.nodes if n.tor == tor.name}
        foreign = {n.pod_cidr for n in plan.nodes if n.tor != tor.name}
        for up in tor.uplinks:
            spine = str(up.b.address)
            assert cfg.evaluate(spine, "out", tor.subnet).accepted
            for p in mine | set(plan.anycast):
                assert cfg.evaluate(spine, "out", p).accepted, (tor.name, p)
            for p in foreign | {DEFAULT}:
                assert not cfg.evaluate(spine, "out", p).accepted, (tor.name, p)
            assert cfg.evaluate(spine, "in", DEFAULT).accepted  # egress: the default comes from the spines
            assert cfg.evaluate(spine, "in", next(iter(foreign))).accepted


def test_spines_take_from_each_tor_only_its_racks_prefixes(lab):
    plan, artifacts = lab
    for spine in plan.spines:
        cfg = FrrConfig.parse(artifacts[f"spines/{spine.name}/frr.conf"])
        for s in spine.downlinks:
            tor = plan.tor_by_name[s.a.host]
            mine = set(tor.announces_up)
            foreign = {n.pod_cidr for n in plan.nodes if n.tor != tor.name}
            for p in mine:
                assert cfg.evaluate(str(s.a.address), "in", p).accepted, (spine.name, tor.name, p)
            for p in foreign | {DEFAULT}:
                assert not cfg.evaluate(str(s.a.address), "in", p).accepted, (spine.name, tor.name, p)


def test_spines_take_only_the_default_from_upstreams_and_send_them_the_site(lab):
    plan, artifacts = lab
    assert plan.upstreams, "the lab site has upstreams"
    for spine in plan.spines:
        cfg = FrrConfig.parse(artifacts[f"spines/{spine.name}/frr.conf"])
        for s in spine.uplinks:
            up = str(s.b.address)
            assert cfg.evaluate(up, "in", DEFAULT).accepted
            for p in (*plan.pod_pools, *plan.anycast, plan.nodes[0].pod_cidr, "198.18.0.0/15"):
                assert not cfg.evaluate(up, "in", p).accepted, (spine.name, p)  # never override the site
            for p in spine.upstream_out:
                assert cfg.evaluate(up, "out", p).accepted, (spine.name, p)
            for p in (plan.nodes[0].pod_cidr, DEFAULT, s.subnet):
                assert not cfg.evaluate(up, "out", p).accepted, (spine.name, p)  # aggregates only


def test_spines_depreference_anycast_from_other_dcs(lab):
    plan, artifacts = lab
    for spine in plan.spines:
        cfg = FrrConfig.parse(artifacts[f"spines/{spine.name}/frr.conf"])
        for s in spine.peers:
            peer = str(s.other(spine.name).address)
            for a in plan.anycast:
                assert cfg.evaluate(peer, "in", a).local_pref == 50
            assert cfg.evaluate(peer, "in", f"{plan.api_address}/32").local_pref == 50
            assert cfg.evaluate(peer, "in", DEFAULT).local_pref == 50  # egress prefers the DC's own upstreams
            pod = cfg.evaluate(peer, "in", plan.nodes[0].pod_cidr)
            assert pod.accepted and pod.local_pref is None
        for s in spine.downlinks:
            d = cfg.evaluate(str(s.a.address), "in", plan.anycast[0])
            assert d.accepted and d.local_pref is None  # local anycast keeps the default 100


# ---- the evaluator can fail: mutate the shipped text and the verdict changes


def test_mutated_frr_prefix_list_is_caught(lab):
    plan, artifacts = lab
    tor = plan.tors[0]
    s = tor.clients[0]
    text = artifacts[f"tors/{tor.name}/frr.conf"]
    anycast = plan.anycast[0]
    line = next(ln for ln in text.splitlines() if ln.startswith(f"ip prefix-list FROM-{s.a.host} ")
                and ln.endswith(f" {anycast}"))
    loose = text.replace(line, line + " le 32")
    assert FrrConfig.parse(loose).evaluate(str(s.a.address), "in", too_specific(anycast)).accepted
    unbound = text.replace(f" neighbor {s.a.address} prefix-list FROM-{s.a.host} in\n", "")
    assert FrrConfig.parse(unbound).evaluate(str(s.a.address), "in", plan.nodes[-1].pod_cidr).accepted
    dangling = text.replace(f"prefix-list FROM-{s.a.host} in", "prefix-list FROM-nobody in")
    assert not FrrConfig.parse(dangling).evaluate(str(s.a.address), "in", s.a_announces[0]).accepted


def test_frr_ebgp_without_policy_is_denied():
    cfg = FrrConfig.parse("router bgp 65001\n neighbor 192.0.2.1 remote-as 65002\nexit\n")
    assert not cfg.evaluate("192.0.2.1", "in", "10.0.0.0/24").accepted
    relaxed = FrrConfig.parse("router bgp 65001\n no bgp ebgp-requires-policy\n neighbor 192.0.2.1 remote-as 65002\n")
    assert relaxed.evaluate("192.0.2.1", "in", "10.0.0.0/24").accepted


@pytest.mark.parametrize("text", [
    "route-map X permit 10\n match community C\nexit\n",
    "route-map X permit 10\n set as-path prepend 65000\nexit\n",
    "ip prefix-list P seq 5 permit 10.0.0.1/8\n",
    "router bgp 1\n neighbor 192.0.2.1 filter-list F in\n",
])
def test_frr_constructs_it_does_not_model_are_refused(text):
    with pytest.raises(PolicyParseError):
        FrrConfig.parse(text)
