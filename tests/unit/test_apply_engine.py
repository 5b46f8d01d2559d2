"""The apply driver with pre-flight and ansible-runner replaced by fakes: refusal, confirmation, stop, records."""

from __future__ import annotations

import json

import pytest

from provisioner.apply import engine
from provisioner.apply.preflight import HostResult
from provisioner.apply.rollout import BatchOutcome
from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import LAB


@pytest.fixture
def fake(monkeypatch, tmp_path):
    plan = compile_site(LAB).plan
    tree = render(plan)
    calls: dict[str, list] = {"batches": [], "preflight": []}
    bad: dict[str, list] = {"preflight": [], "fail_batch": []}

    def fake_preflight(targets, accept_new=False):
        calls["preflight"].append([t.host for t in targets])
        return [HostResult(t.host, problems=[("physical cores", "128", "96")] if t.host in bad["preflight"] else [])
                for t in targets]

    def fake_run_rollout(run, plan_batches, opts, names, progress=None, on_batch_start=None):
        out, stop = [], False
        for batch in plan_batches:
            if stop:
                out.append(BatchOutcome(batch, "skipped"))
                continue
            calls["batches"].append(batch.name)
            failed = batch.name in bad["fail_batch"]
            o = BatchOutcome(batch, "failed" if failed else "ok", seconds=1.0)
            o.hosts = {h: {"ok": 3, "changed": 1, "failed": int(failed), "unreachable": 0, "skipped": 0}
                       for h in batch.hosts}
            out.append(o)
            stop = failed
        return out

    monkeypatch.setattr(engine.pf, "run", fake_preflight)
    monkeypatch.setattr(engine, "run_rollout", fake_run_rollout)
    pki = tmp_path / "pki"
    for c in plan.etcd_clusters:
        for m in c.members:
            (pki / c.name / m.name).mkdir(parents=True)
            for f in ("ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"):
                (pki / c.name / m.name / f).write_text("x")

    def request(**kw):
        return engine.Request(plan=plan, tree=tree, runs_root=tmp_path / "runs" / "lab", pki_dir=pki, **kw)

    return request, calls, bad, tmp_path / "runs" / "lab"


def test_ok_then_only_changed_switches(fake):
    request, calls, _bad, runs = fake
    code, report = engine.execute(request())
    assert code == 0 and report["status"] == "ok"
    assert calls["batches"][:4] == ["spines", "tors", "etcd", "canary dc1-r1"]
    assert len(calls["preflight"][0]) == 30
    meta = json.loads((runs / report["run_id"] / "run.json").read_text())
    assert meta["run_id"] == report["run_id"] and meta["status"] == "ok" and meta["previous_run"] is None
    assert (runs / report["run_id"] / "tree" / "ansible" / "hosts.yml").exists()
    calls["batches"].clear()
    code, report2 = engine.execute(request())
    assert code == 0 and report2["previous_run"] == report["run_id"]
    assert calls["batches"][0] == "etcd"  # nothing changed on the switches since the last good run


def test_preflight_refusal_runs_nothing(fake):
    request, calls, bad, _runs = fake
    bad["preflight"] = ["dc2-r1-n1"]
    code, report = engine.execute(request())
    assert code == 1 and report["status"] == "refused"
    assert report["preflight"]["mismatches"] == [{"host": "dc2-r1-n1", "check": "physical cores",
                                                  "expected": "128", "actual": "96"}]
    assert calls["batches"] == []
    # a refused run is not "successful": the next one still treats every switch as changed
    bad["preflight"] = []
    engine.execute(request())
    assert calls["batches"][0] == "spines"


def test_declined_confirmation_changes_nothing(fake):
    request, calls, _bad, _runs = fake
    code, report = engine.execute(request(confirm=lambda batches: False))
    assert code == 1 and report["status"] == "aborted" and calls["batches"] == []


def test_failed_batch_stops_and_is_not_a_baseline(fake):
    request, calls, bad, _runs = fake
    bad["fail_batch"] = ["rack dc2-r1"]
    code, report = engine.execute(request())
    assert code == 1 and report["status"] == "failed"
    assert calls["batches"][-1] == "rack dc2-r1"
    statuses = {b["name"]: b["status"] for b in report["batches"]}
    assert statuses["rack dc2-r2"] == "skipped" and statuses["canary dc1-r1"] == "ok"
    assert report["hosts"]["dc2-r2-n1"]["state"] == "skipped"
    calls["batches"].clear()
    bad["fail_batch"] = []
    code, report2 = engine.execute(request())
    assert report2["previous_run"] is None and calls["batches"][0] == "spines"


def test_limit_and_check(fake):
    request, calls, _bad, _runs = fake
    code, report = engine.execute(request(limit="rack_dc3_r2", check=True))
    assert code == 0 and report["check"] is True
    assert calls["batches"] == ["tors", "canary dc3-r2"]  # its ToR, then its nodes
    # check-mode runs never count as the last successful run
    calls["batches"].clear()
    engine.execute(request(limit="rack_dc3_r2"))
    assert calls["batches"][0] == "tors"
