"""Rollout order and batching (pure): changed switches, etcd, canary rack, the other racks."""

from __future__ import annotations

import pytest

from provisioner.apply.rollout import Batch, BatchOutcome, batches, changed_switches, parse_batch, run_batches
from provisioner.errors import InputError
from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import LAB


@pytest.fixture(scope="module")
def lab():
    plan = compile_site(LAB).plan
    return plan, render(plan)


def test_first_run_order(lab):
    plan, tree = lab
    bs = batches(plan, tree, None)
    assert [b.kind for b in bs] == ["switches", "etcd", "canary", *["racks"] * 5]
    assert bs[0].hosts == tuple(t.name for t in plan.tors) + tuple(s.name for s in plan.spines)
    assert set(bs[1].hosts) == {"etcd1", "etcd2", "etcd3", "events1", "events2", "events3"}
    assert bs[2].name == "canary dc1-r1" and bs[2].hosts == ("dc1-r1-n1", "dc1-r1-n2", "cp1")
    assert [b.racks for b in bs[3:]] == [("dc1-r2",), ("dc2-r1",), ("dc2-r2",), ("dc3-r1",), ("dc3-r2",)]
    # every BIRD host exactly once
    bird_hosts = [h for b in bs[2:] for h in b.hosts]
    assert sorted(bird_hosts) == sorted([n.hostname for n in plan.nodes] + ["cp1", "cp2", "cp3"])


def test_only_changed_switches(lab):
    plan, tree = lab
    assert changed_switches(plan, tree, dict(tree)) == []
    previous = dict(tree)
    previous["tors/dc2-r1-tor/frr.conf"] = "old\n"
    assert changed_switches(plan, tree, previous) == ["dc2-r1-tor"]
    bs = batches(plan, tree, previous)
    assert bs[0] == Batch("switches", "switches", ("dc2-r1-tor",))
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


def test_stop_at_first_failed_batch():
    bs = [Batch(f"b{i}", "racks", (f"h{i}",)) for i in range(4)]
    seen = []

    def run_one(i, b):
        seen.append(b.name)
        return BatchOutcome(b, "failed" if i == 1 else "ok")

    out = run_batches(bs, run_one)
    assert seen == ["b0", "b1"]
    assert [o.status for o in out] == ["ok", "failed", "skipped", "skipped"]
