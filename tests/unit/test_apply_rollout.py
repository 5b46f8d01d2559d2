"""Rollout order and batching (pure): changed switches, etcd, canary rack, the other racks."""

from __future__ import annotations

import pytest

from provisioner.apply.rollout import Batch, Sequencer, batches, changed_switches, parse_batch, switch_waves
from provisioner.errors import InputError
from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import EXAMPLE, LAB


@pytest.fixture(scope="module")
def lab():
    plan = compile_site(LAB).plan
    return plan, render(plan)


def test_first_run_order(lab):
    plan, tree = lab
    bs = batches(plan, tree, None)
    assert [b.kind for b in bs] == ["switches", "switches", "etcd", "canary", *["racks"] * 5]
    # one spine per DC (the lab has one each) in parallel, then every ToR in parallel
    assert bs[0] == Batch("spines", "switches", ("dc1-spine1", "dc2-spine1", "dc3-spine1"))
    assert bs[1] == Batch("tors", "switches", tuple(t.name for t in plan.tors))
    assert set(bs[2].hosts) == {"etcd1", "etcd2", "etcd3", "events1", "events2", "events3"}
    assert bs[3].name == "canary dc1-r1" and bs[3].hosts == ("dc1-r1-n1", "dc1-r1-n2", "cp1")
    assert [b.racks for b in bs[4:]] == [("dc1-r2",), ("dc2-r1",), ("dc2-r2",), ("dc3-r1",), ("dc3-r2",)]
    # every BIRD host exactly once
    bird_hosts = [h for b in bs[3:] for h in b.hosts]
    assert sorted(bird_hosts) == sorted([n.hostname for n in plan.nodes] + ["cp1", "cp2", "cp3"])


def test_only_changed_switches(lab):
    plan, tree = lab
    assert changed_switches(plan, tree, dict(tree)) == []
    previous = dict(tree)
    previous["tors/dc2-r1-tor/frr.conf"] = "old\n"
    assert changed_switches(plan, tree, previous) == ["dc2-r1-tor"]
    bs = batches(plan, tree, previous)
    assert bs[0] == Batch("tors", "switches", ("dc2-r1-tor",))
    assert [b.kind for b in batches(plan, tree, dict(tree))][:2] == ["etcd", "canary"]


def test_canary_and_percent_batches(lab):
    plan, tree = lab
    bs = batches(plan, tree, dict(tree), canary="dc2-r2", batch="50%")
    assert bs[1].racks == ("dc2-r2",) and bs[1].kind == "canary"
    assert [b.racks for b in bs[2:]] == [("dc1-r1", "dc1-r2", "dc2-r1"), ("dc3-r1", "dc3-r2")]
    assert bs[2].name == "racks dc1-r1..dc2-r1"
    assert len(batches(plan, tree, dict(tree), batch="100%")) == 3  # etcd, canary, the rest at once
    assert len(batches(plan, tree, dict(tree), batch="1%")) == 7  # never less than one rack


def test_limit(lab):
    plan, tree = lab
    bs = batches(plan, tree, None, selected={"dc2-r1-n1", "dc3-r2-n2", "dc2-r1-tor"})
    assert [(b.kind, b.hosts) for b in bs] == [("switches", ("dc2-r1-tor",)), ("canary", ("dc2-r1-n1",)),
                                               ("racks", ("dc3-r2-n2",))]
    with pytest.raises(InputError, match="no host selected"):
        batches(plan, tree, None, canary="dc1-r1", selected={"dc2-r1-n1"})


@pytest.mark.parametrize("spec", ["racks", "0%", "101%", "50", "-1%", ""])
def test_bad_batch(spec):
    with pytest.raises(InputError, match="--batch"):
        parse_batch(spec)


def test_bad_canary(lab):
    plan, tree = lab
    with pytest.raises(InputError, match="no rack named 'nope'"):
        batches(plan, tree, None, canary="nope")


def test_switch_waves_never_take_both_spines_of_a_dc():
    plan = compile_site(EXAMPLE).plan
    waves = switch_waves(plan, [s.name for s in plan.spines] + [t.name for t in plan.tors])
    assert [w.name for w in waves] == ["spines 1/2", "spines 2/2", "tors"]
    assert waves[0].hosts == ("dc1-spine1", "dc2-spine1", "dc3-spine1")
    assert waves[1].hosts == ("dc1-spine2", "dc2-spine2", "dc3-spine2")
    assert len(waves[2].hosts) == len(plan.tors) == 36
    dc = {s.name: s.dc for s in plan.spines}
    for w in waves[:2]:
        assert len({dc[h] for h in w.hosts}) == len(w.hosts)  # at most one spine of each DC per wave
    # only dc2's second spine changed: one wave with it alone
    assert switch_waves(plan, ["dc2-spine2"]) == [Batch("spines", "switches", ("dc2-spine2",))]
    assert switch_waves(plan, []) == []


def _ok(host, task="Mark the host as passed"):
    return {"event": "runner_on_ok", "event_data": {"host": host, "task": task,
                                                     "res": {"ansible_facts": {"provisioner_passed": True}}}}


def _event(kind, host, task="t", **res):
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_sequencer_stops_at_first_failed_batch():
    bs = [Batch(f"b{i}", "racks", (f"h{i}a", f"h{i}b")) for i in range(4)]
    started, ended = [], []
    seq = Sequencer(bs, on_start=lambda i, b: started.append(b.name), on_end=lambda o: ended.append(o.status))
    assert seq.begin(0)
    for h in bs[0].hosts:
        seq.event(_event("runner_on_ok", h, changed=True))
        seq.event(_ok(h))
    assert seq.begin(1)  # b0 passed
    seq.event(_ok("h1a"))
    seq.event(_event("runner_on_unreachable", "h1b", msg="ssh: connect timed out"))  # not "failed" for Ansible
    seq.event(_ok("h0a"))  # a stray event of another batch's host is not counted for this one
    assert not seq.begin(2)  # b1 did not pass: b2 must not start
    assert not seq.begin(3)
    out = seq.finish(run_ok=True, why="")
    assert [o.status for o in out] == ["ok", "failed", "skipped", "skipped"]
    assert started == ["b0", "b1"] and ended == ["ok", "failed"]
    assert out[1].messages["h1b"].startswith("unreachable: t: ssh")
    assert out[0].changed == 2


def test_sequencer_a_host_that_never_passed_fails_its_batch():
    bs = [Batch("b0", "racks", ("h0", "h1")), Batch("b1", "racks", ("h2",))]
    seq = Sequencer(bs)
    seq.begin(0)
    seq.event(_ok("h0"))  # h1: no event at all (the play stopped before it)
    seq.event({"event": "playbook_on_stats", "event_data": {"ok": {"h0": 3}, "failures": {}, "dark": {}}})
    out = seq.finish(run_ok=False, why="ansible-runner failed")
    assert [o.status for o in out] == ["failed", "skipped"]
    assert out[0].messages["h1"].startswith("not run")


def test_sequencer_rescued_failure_is_not_a_failure():
    seq = Sequencer([Batch("b0", "racks", ("h0",))])
    seq.begin(0)
    seq.event(_event("runner_on_failed", "h0", task="probe", msg="transient"))
    seq.event(_ok("h0"))
    seq.event({"event": "playbook_on_stats", "event_data": {"ok": {"h0": 5}, "failures": {}, "rescued": {"h0": 1}}})
    [o] = seq.finish(run_ok=True, why="")
    assert o.status == "ok" and o.messages == {}


def test_sequencer_failed_run_without_failed_batch_fails_the_next():
    bs = [Batch("b0", "racks", ("h0",)), Batch("b1", "racks", ("h1",))]
    seq = Sequencer(bs)
    seq.begin(0)
    seq.event(_ok("h0"))
    out = seq.finish(run_ok=False, why="ansible-runner failed, rc 4")  # e.g. the guard of b1 broke
    assert [o.status for o in out] == ["ok", "failed"]
    assert out[1].messages["(ansible)"] == "ansible-runner failed, rc 4"
