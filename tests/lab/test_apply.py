"""apply against a --bare lab (own prefix ``papply``, so it never touches another lab): full apply reaches a
passing ``lab verify``; a second apply changes nothing; a bad canary change is reverted and stops the rollout;
an unreachable host stops the rollout at its batch; pre-flight refuses a changed host key and a wrong core
count; rollback to a previous run restores a passing verify.

The tests share one lab and one runs directory and run in file order. Timings are printed (pytest -s) and
recorded as junit properties: the full apply and the no-op apply are the numbers docs/apply.md quotes, each
with its phases (pre-flight, the one Ansible run, every batch) and the load average. The targets (first apply
<= 60 s, no-op <= 20 s on the 30-host lab) are asserted only with PROVISIONER_APPLY_ASSERT_TARGETS=1: on a
2-core machine shared with other jobs the same apply varies by 2x, and a timing assert would fail on noise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.pipeline import compile_site
from tests.conftest import LAB
from tests.helpers import run_cli, wait_for
from tests.lab.conftest import Lab, running_lab

PREFIX = os.environ.get("PROVISIONER_LAB_PREFIX") or "papply"
CANARY = "dc1-r1"
TIMINGS: dict[str, float] = {}
TARGETS = {"apply": 60.0, "noop": 20.0}  # seconds, on the 30-host lab (issue 17)
ASSERT_TARGETS = os.environ.get("PROVISIONER_APPLY_ASSERT_TARGETS") == "1"


@pytest.fixture(scope="module")
def alab() -> Iterator[Lab]:
    with running_lab(bare=True, prefix=PREFIX) as running:
        yield running


@pytest.fixture(scope="module")
def work(alab: Lab, tmp_path_factory) -> dict:
    """A copy of the lab site (so the committed rendered/lab is not involved), a runs dir and the lab's PKI."""
    from provisioner import pki

    base = tmp_path_factory.mktemp("apply")
    site = base / "inventories" / "lab"
    shutil.copytree(LAB, site)
    plan = compile_site(site).plan
    pki_dir = Path(alab.state["pki"])  # where `lab verify` looks for the client certificate
    files, _ = pki.issue(plan, pki_dir, rotate=pki_dir.exists() and any(pki_dir.iterdir()))
    pki.write(pki_dir, files)
    return {"site": site, "runs": base / "runs", "pki": pki_dir, "plan": plan,
            "overlay": alab.state_dir / "inventory.yml", "base": base}


def apply(work: dict, *args: str, cmd: str = "apply") -> tuple[int, dict, str]:
    code, out, err = run_cli(cmd, str(work["site"]), "--yes", "--format", "json", "-i", str(work["overlay"]),
                             "--runs-dir", str(work["runs"]), "--pki", str(work["pki"]), *args)
    try:
        report = json.loads(out)
    except ValueError:
        report = {}
    return code, report, err + out


def timing_report(name: str, seconds: float, report: dict) -> str:
    """One line per run: wall time, phases and every batch, and the machine's load."""
    phases = ", ".join(f"{k} {v}s" for k, v in sorted((report.get("timings") or {}).items()))
    per_batch = ", ".join(f"{b['name']} {b.get('seconds')}s" for b in report.get("batches", []))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"\n{name}: {seconds}s (target {TARGETS.get(name, '-')}s; {phases}; load {load})\n  batches: {per_batch}"


def check_target(name: str) -> None:
    if ASSERT_TARGETS:
        assert TIMINGS[name] <= TARGETS[name], f"{name} took {TIMINGS[name]}s, target {TARGETS[name]}s"


def bird_state(alab: Lab, host: str) -> tuple[str | None, str | None]:
    out = alab.exec(host, ["birdc", "-r", "show", "protocols", "all", "tor"]).stdout
    state = neighbor = None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("BGP state:"):
            state = line.split(":", 1)[1].strip()
        if line.startswith("Neighbor address:"):
            neighbor = line.split(":", 1)[1].strip()
    return state, neighbor


def host_files(alab: Lab, hosts: list[str]) -> dict[str, tuple[float, str]]:
    out = {}
    for h in hosts:
        p = alab.root(h) / "etc/bird/bird.conf"
        out[h] = (p.stat().st_mtime, p.read_text()) if p.exists() else (0.0, "")
    return out


def rack_of(work: dict) -> dict[str, str]:
    plan = work["plan"]
    return {**{n.hostname: n.rack for n in plan.nodes}, **{v.name: v.rack for v in plan.control_plane}}


def test_apply_reaches_a_passing_verify(alab: Lab, work: dict, record_property):
    t0 = time.monotonic()
    code, report, text = apply(work)
    TIMINGS["apply"] = round(time.monotonic() - t0, 1)
    assert code == 0, text
    assert report["status"] == "ok" and report["preflight"]["mismatches"] == []
    # the spines (one per DC per wave), then every ToR at once, etcd, the canary rack, then rack by rack
    assert [(b["name"], b["kind"]) for b in report["batches"]][:4] == [
        ("spines", "switches"), ("tors", "switches"), ("etcd", "etcd"), (f"canary {CANARY}", "canary")]
    assert report["batches"][3]["racks"] == [CANARY]
    assert all(b["kind"] == "racks" and len(b["racks"]) == 1 for b in report["batches"][4:])
    assert all(b["status"] == "ok" for b in report["batches"])
    work["good_run"] = report["run_id"]
    record_property("apply_seconds", TIMINGS["apply"])
    print(timing_report("apply", TIMINGS["apply"], report))
    v = alab.verify(timeout=120)
    assert v.ok, "\n".join(f"{c.name}: {c.detail}" for c in v.failed)
    print(f"verify {v.seconds:.1f}s")
    check_target("apply")


def test_second_apply_changes_nothing(alab: Lab, work: dict, record_property):
    # the tree the first apply pushed (not a fresh render: templates may be edited while the suite runs), in the
    # default order: etcd, the canary rack, then one rack per batch; every host is still contacted and checked
    good_tree = work["runs"] / "lab" / work["good_run"] / "tree"
    t0 = time.monotonic()
    code, report, text = apply(work, "--tree", str(good_tree))
    TIMINGS["noop"] = round(time.monotonic() - t0, 1)
    assert code == 0, text
    assert report["changed"] == 0, {h: s for h, s in report["hosts"].items() if s.get("changed")}
    assert "switches" not in [b["kind"] for b in report["batches"]]  # no switch config changed since the last run
    assert [b["kind"] for b in report["batches"]] == ["etcd", "canary", *["racks"] * 5]
    assert all(s["state"] == "ok" and s["ok"] >= 1 for s in report["hosts"].values()), report["hosts"]
    record_property("noop_apply_seconds", TIMINGS["noop"])
    print(timing_report("noop", TIMINGS["noop"], report))
    check_target("noop")


def test_bad_canary_change_is_reverted_and_stops_the_rollout(alab: Lab, work: dict):
    runs = work["runs"] / "lab"
    good_tree = runs / work["good_run"] / "tree"
    bad_tree = work["base"] / "bad-tree"
    shutil.copytree(good_tree, bad_tree)
    victim = f"{CANARY}-n1"
    conf = bad_tree / "nodes" / victim / "bird.conf"
    good_text = conf.read_text()
    tor = next(n.tor for n in work["plan"].nodes if n.hostname == victim)
    tor_address = next(str(n.session.b.address) for n in work["plan"].nodes if n.hostname == victim)
    wrong = tor_address.rsplit(".", 1)[0] + ".253"
    assert f"neighbor {tor_address} as" in good_text, tor
    conf.write_text(good_text.replace(f"neighbor {tor_address} as", f"neighbor {wrong} as"))

    racks = rack_of(work)
    others = [h for h, r in racks.items() if r != CANARY]
    before = host_files(alab, others)

    code, report, text = apply(work, "--tree", str(bad_tree), "--gate-timeout", "15", "--limit", "nodes:control_plane")
    assert code == 1, text
    status = {b["name"]: b["status"] for b in report["batches"]}
    assert status[f"canary {CANARY}"] == "failed"
    assert all(s == "skipped" for n, s in status.items() if n != f"canary {CANARY}"), status
    # the gate itself failed (not the configure step), and said why
    assert "health gate failed after" in report["messages"][victim]
    assert f"neighbour is {wrong}, expected {tor_address}" in report["messages"][victim]
    # reverted on the canary: the old file is back and BIRD runs it, session Established with the real ToR
    assert (alab.root(victim) / "etc/bird/bird.conf").read_text() == good_text
    assert wait_for(lambda: bird_state(alab, victim) == ("Established", tor_address)), bird_state(alab, victim)
    # no other rack was touched
    assert host_files(alab, others) == before
    # Ansible itself never reached a host outside the canary rack, and the controller never let batch 2 start
    events = runs / report["run_id"] / "ansible" / "artifacts" / "rollout" / "job_events"
    contacted = {json.loads(p.read_text()).get("event_data", {}).get("host") for p in events.iterdir()} - {None}
    assert contacted <= {*(h for h, r in racks.items() if r == CANARY), "localhost"}, contacted
    # the controller let the canary start and told every later batch's guard to stop
    gates = runs / report["run_id"] / "ansible" / "gates"
    assert (gates / "01").read_text() == "go\n"
    assert all(g.read_text() == "stop\n" for g in gates.iterdir() if g.name != "01")


def test_unreachable_host_stops_the_rollout_at_its_batch(alab: Lab, work: dict):
    from provisioner.apply.engine import Request, execute

    plan = work["plan"]
    victim = "dc1-r2-n1"  # the first rack after the canary
    ns = alab.state["hosts"][victim]["ns"]
    downed = []

    def on_start(_i, batch):
        if victim in batch.hosts:
            subprocess.run(["ip", "-n", ns, "link", "set", "mgmt0", "down"], check=True)
            downed.append(batch.name)

    from provisioner.write import read_tree

    tree = read_tree(work["runs"] / "lab" / work["good_run"] / "tree")
    req = Request(plan=plan, tree=tree, runs_root=work["runs"] / "lab", inventories=[work["overlay"]],
                  limit="nodes:control_plane", pki_dir=work["pki"], gate_timeout=30, on_batch_start=on_start)
    try:
        code, report = execute(req)
    finally:
        subprocess.run(["ip", "-n", ns, "link", "set", "mgmt0", "up"], check=True)
    assert downed == ["rack dc1-r2"]
    assert code == 1
    status = [(b["name"], b["status"]) for b in report["batches"]]
    names = [n for n, _ in status]
    at = names.index("rack dc1-r2")
    assert all(s == "ok" for _, s in status[:at]), status
    assert status[at][1] == "failed"
    assert all(s == "skipped" for _, s in status[at + 1:]), status
    assert report["hosts"][victim]["state"] == "unreachable"


def test_preflight_refuses_changed_host_key_and_wrong_core_count(alab: Lab, work: dict):
    from provisioner.lab.hosts import restart_sshd, set_hardware_facts, trust_host_key

    key_host, core_host = "dc3-r1-n1", "dc3-r2-n1"
    restart_sshd(LAB, key_host, new_host_key=True, prefix=PREFIX)
    set_hardware_facts(LAB, core_host, cores=96, prefix=PREFIX)
    try:
        code, report, text = apply(work)
        assert code == 1, text
        assert report["status"] == "refused"
        found = {(m["host"], m["check"]) for m in report["preflight"]["mismatches"]}
        assert found == {(key_host, "host key"), (core_host, "physical cores")}, report["preflight"]
        assert "CHANGED" in next(m["actual"] for m in report["preflight"]["mismatches"] if m["host"] == key_host)
        assert not (work["runs"] / "lab" / report["run_id"] / "ansible" / "artifacts").exists()  # nothing ran
        code, out, _err = run_cli("apply", str(work["site"]), "--yes", "-i", str(work["overlay"]),
                                  "--runs-dir", str(work["runs"]), "--pki", str(work["pki"]))
        assert code == 1
        assert re.search(r"pre-flight refused: 2 of \d+ hosts", out), out
        assert "physical cores" in out and "96 (96 threads)" in out
    finally:
        set_hardware_facts(LAB, core_host, cores=128, prefix=PREFIX)
        trust_host_key(LAB, prefix=PREFIX)


def test_rollback_to_the_previous_run_restores_verify(alab: Lab, work: dict, record_property):
    # drift: someone hand-edits a node in dc2 so that its session goes down; verify must notice
    victim = "dc2-r2-n1"
    conf = alab.root(victim) / "etc/bird/bird.conf"
    good = conf.read_text()
    conf.write_text(good.replace("neighbor 198.18.22.254 as", "neighbor 198.18.22.250 as"))
    alab.exec(victim, ["birdc", "configure"], check=True)
    assert wait_for(lambda: bird_state(alab, victim)[0] != "Established", timeout=20)

    t0 = time.monotonic()
    code, report, text = apply(work, "--to", work["good_run"], "--batch", "100%", cmd="rollback")
    TIMINGS["rollback"] = round(time.monotonic() - t0, 1)
    assert code == 0, text
    assert report["mode"] == "rollback" and report["status"] == "ok"
    assert conf.read_text() == good
    v = alab.verify(timeout=120)
    assert v.ok, "\n".join(f"{c.name}: {c.detail}" for c in v.failed)
    record_property("rollback_seconds", TIMINGS["rollback"])
    print(f"\nrollback: {TIMINGS['rollback']}s; timings {TIMINGS}")
