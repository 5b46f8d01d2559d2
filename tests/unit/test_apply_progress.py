"""Progress from ansible-runner events (live rich display and plain lines), summary table, rollback sources."""

from __future__ import annotations

import io

from provisioner.apply.progress import Progress, summary_text
from provisioner.apply.rollback import tree_from_git, tree_from_run
from provisioner.apply.rollout import Batch, BatchOutcome
from provisioner.apply.rollout import collect as _collect
from provisioner.apply.runner import create_run
from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import LAB

DIFF = [{"before": "a\n", "after": "b\n", "after_header": "/etc/bird/bird.conf"}]
BATCH = Batch("canary dc1-r1", "canary", ("dc1-r1-n1", "dc1-r1-n2"), ("dc1-r1",))
EVENTS = [
    {"event": "runner_on_start", "event_data": {"host": "dc1-r1-n1", "task": "Install bird.conf"}},
    {"event": "runner_on_ok", "event_data": {"host": "dc1-r1-n1", "task": "Install bird.conf",
                                             "res": {"changed": True, "diff": DIFF}}},
    {"event": "runner_on_ok", "event_data": {"host": "dc1-r1-n2", "task": "Install bird.conf",
                                             "res": {"changed": True, "censored": "hidden"}}},
    {"event": "runner_on_failed", "event_data": {"host": "dc1-r1-n2", "task": "Health gate",
                                                 "res": {"msg": "health gate failed after 5s: session tor is Active"}}},
    {"event": "playbook_on_stats", "event_data": {"ok": {"dc1-r1-n1": 4, "dc1-r1-n2": 3},
                                                  "changed": {"dc1-r1-n1": 1, "dc1-r1-n2": 1},
                                                  "failures": {"dc1-r1-n2": 1}, "dark": {}, "skipped": {}}},
]


def _outcome() -> BatchOutcome:
    outcome = BatchOutcome(BATCH, "failed", seconds=3.2)
    for e in EVENTS:
        _collect(outcome, e)
    return outcome


def test_collect_counts_messages_and_diffs():
    o = _outcome()
    assert o.hosts["dc1-r1-n1"] == {"ok": 4, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 0}
    assert o.hosts["dc1-r1-n2"]["failed"] == 1
    assert "session tor is Active" in o.messages["dc1-r1-n2"]
    assert o.diffs["dc1-r1-n1"][0]["path"] == "/etc/bird/bird.conf"
    assert o.diffs["dc1-r1-n2"][0]["hidden"] is True


def test_progress_live_and_plain():
    for live in (True, False):
        stream = io.StringIO()
        p = Progress(live=live, stream=stream)
        p.start_batch(0, 3, BATCH)
        for e in EVENTS:
            p.event(e)
        p.end_batch(_outcome())
        text = stream.getvalue()
        assert "canary dc1-r1" in text and "failed in 3.2s" in text


def test_summary_table():
    text = summary_text([_outcome(), BatchOutcome(Batch("rack dc1-r2", "racks", ("dc1-r2-n1",)), "skipped")])
    assert "dc1-r1-n2" in text and "failed" in text and "skipped" in text


def test_rollback_sources(tmp_path):
    plan = compile_site(LAB).plan
    tree = render(plan)
    run = create_run(tmp_path / "runs", tree, {"status": "ok"})
    assert tree_from_run(tmp_path / "runs", run.run_id) == tree
    assert tree_from_run(tmp_path / "runs", "nope") is None
    at_head, commit = tree_from_git(LAB, "HEAD")
    assert len(commit) == 40
    assert "ansible/hosts.yml" in at_head and any(p.startswith("nodes/") for p in at_head)
