"""One rollout run for real (generated playbook, guard plays, ansible-runner, the nodes play) against localhost.

Three single-host batches, each host a directory with a fake birdc (no root, no daemons, no network). The
first batch that does not pass stops the rollout: its later batches are never contacted, whether the host
failed its gate (Ansible stops by itself) or was unreachable (Ansible would go on; the controller's guard
stops it).
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from pathlib import Path

import pytest

from provisioner.apply.rollout import Batch
from provisioner.apply.runner import Options, create_run, rollout_playbook, run_rollout
from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import LAB

FAKE_BIRDC = """#!/bin/sh
# fake birdc: "not running" until started; then Established with $NEIGH, exporting everything the gate wants
case "$*" in
  *"show status"*) [ -e "$STATE/started" ] ;;
  *"show protocols all"*) printf 'tor BGP --- up 00:00:01 Established\\n  BGP state:          Established\\n'
     printf '    Neighbor address: %s\\n' "$NEIGH" ;;
  *"show route export"*) for p in $(echo "$EXPORTS" | tr , ' '); do printf '%s  blackhole\\n' "$p"; done ;;
  *"configure confirm"*) echo "Reconfiguration confirmed" ;;
  *"configure undo"*) echo "Undo requested"; touch "$STATE/undone" ;;
  *'configure "'*' timeout '*) printf 'Reconfigured\\n' ;;
  *) echo "syntax error"; exit 1 ;;
esac
"""
HOSTS = ("dc1-r1-n1", "dc1-r2-n1", "dc2-r1-n1")


@pytest.fixture
def rollout(tmp_path: Path):
    plan = compile_site(LAB).plan
    tree = render(plan)
    nodes = {n.hostname: n for n in plan.nodes}
    birdc = tmp_path / "birdc"
    birdc.write_text(FAKE_BIRDC)
    birdc.chmod(0o755)
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name

    def make(bad: dict[str, str], plain: bool = False):
        lines = ["all:", "  hosts:"]
        for h in HOSTS:
            d = tmp_path / h
            (d / "state").mkdir(parents=True, exist_ok=True)
            n = nodes[h]
            neigh = "198.18.99.99" if bad.get(h) == "gate" else str(n.session.b.address)
            exports = ",".join([str(n.pod_cidr), *(str(a) for a in plan.site.address_plan.anycast)])
            conn = ("ansible_connection: ssh, ansible_host: 127.0.0.1, ansible_port: 9, ansible_user: nobody"
                    if bad.get(h) == "unreachable" else "ansible_connection: local")
            lines.append(f"    {h}: {{{conn}, ansible_python_interpreter: {sys.executable}, "
                         f"bird_conf: {d}/bird.conf, bird_conf_owner: {user}, bird_conf_group: {group}, "
                         f"cni_conflist: {d}/cni.conflist, bird_start_cmd: touch {d}/state/started, "
                         f"health_conf: {d}/ahc.conf, health_services_conf: {d}/ahc.d/services.conf, "
                         f"health_bird_set: {d}/anycast-prefixes.conf, health_start_cmd: touch {d}/state/health, "
                         f"health_restart_cmd: touch {d}/state/health, "
                         f"bird_validate_cmd: /bin/true %s, gate_timeout: 3, "
                         f'birdc_cmd: "env STATE={d}/state NEIGH={neigh} EXPORTS={exports} {birdc}"}}')
        overlay = tmp_path / "overlay.yml"
        overlay.write_text("\n".join(lines) + "\n")
        run = create_run(tmp_path / "runs" / "lab", tree, {"status": "running"})
        if plain:  # what AWX or a hand run does: the ordinary playbook, serial 1, no provisioner guard
            import subprocess

            return subprocess.run(
                [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(run.tree_dir / "ansible/hosts.yml"),
                 "-i", str(overlay), str(Path(__file__).resolve().parents[2] / "playbooks/nodes.yml"),
                 "--limit", ",".join(HOSTS), "-e", f"rendered_dir={run.tree_dir}", "-e", "gate_timeout=3",
                 "-e", "node_serial=2"],
                capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
                env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
                     "ANSIBLE_CONFIG": str(Path(__file__).resolve().parents[2] / "ansible.cfg"),
                     "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1"})
        opts = Options(inventories=[run.tree_dir / "ansible/hosts.yml", overlay],
                       extravars={"rendered_dir": str(run.tree_dir), "pki_dir": "", "gate_timeout": 3})
        batches = [Batch(f"rack {nodes[h].rack}", "racks" if i else "canary", (h,), (nodes[h].rack,))
                   for i, h in enumerate(HOSTS)]
        started: list[str] = []
        outcomes = run_rollout(run, batches, opts, [], on_batch_start=lambda _i, b: started.append(b.name))
        return outcomes, run.data_dir, started

    return make, tmp_path


def test_every_batch_runs_in_one_run(rollout):
    make, tmp = rollout
    outcomes, data, started = make({})
    assert [o.status for o in outcomes] == ["ok", "ok", "ok"], [o.messages for o in outcomes]
    assert all((tmp / h / "state" / "started").exists() and (tmp / h / "bird.conf").exists() for h in HOSTS)
    assert [p.name for p in (data / "artifacts").iterdir()] == ["rollout"]  # one ansible-runner run
    assert [(data / "gates" / f"0{i}").read_text() for i in (1, 2, 3)] == ["go\n"] * 3
    assert started == ["rack dc1-r1", "rack dc1-r2", "rack dc2-r1"]
    assert all(o.seconds > 0 for o in outcomes)


@pytest.mark.parametrize("failure", ["gate", "unreachable"])
def test_first_failed_batch_stops_the_rollout(rollout, failure: str):
    make, tmp = rollout
    outcomes, data, started = make({"dc1-r2-n1": failure})
    assert [o.status for o in outcomes] == ["ok", "failed", "skipped"], [o.messages for o in outcomes]
    message = outcomes[1].messages["dc1-r2-n1"]
    if failure == "gate":
        assert "neighbour is 198.18.99.99" in message, message
        assert outcomes[1].hosts["dc1-r2-n1"]["failed"] >= 1
    else:
        assert message.startswith("unreachable"), message
        assert outcomes[1].hosts["dc1-r2-n1"]["unreachable"] >= 1
    # the third batch never started and its host was never touched
    assert started == ["rack dc1-r1", "rack dc1-r2"]
    assert not (tmp / "dc2-r1-n1" / "bird.conf").exists()
    assert not (tmp / "dc2-r1-n1" / "state" / "started").exists()
    assert (data / "gates" / "03").read_text() == "stop\n"


def test_plain_ansible_run_stops_at_the_first_failed_host(rollout):
    """From AWX or by hand (nodes.yml, two hosts per serial batch): one host failing its gate stops the play.

    Its batch partner finishes, the next batch is never touched. (A failure handled in a rescue does not count
    for ``max_fail_percentage`` when the block also has an ``always`` section, and the play would go on to the
    next batch; so the gates clean up at the end of the block and in the rescue instead.)
    """
    make, tmp = rollout
    proc = make({"dc1-r2-n1": "gate"}, plain=True)
    assert proc.returncode != 0, proc.stdout
    assert "health gate failed" in proc.stdout
    assert (tmp / "dc1-r1-n1" / "state" / "started").exists()
    assert not (tmp / "dc2-r1-n1" / "bird.conf").exists(), proc.stdout
    assert not (tmp / "dc2-r1-n1" / "state" / "started").exists()


def test_rollout_playbook_imports_the_ordinary_playbooks(tmp_path: Path):
    import yaml

    text = rollout_playbook([Batch("spines", "switches", ("s1", "s2")), Batch("etcd", "etcd", ("e1",)),
                             Batch("canary r1", "canary", ("n1", "n2"))], tmp_path / "gates")
    plays = yaml.safe_load(text)
    assert [p["name"] for p in plays][::2] == ["provisioner batch 1/3: spines", "provisioner batch 2/3: etcd",
                                               "provisioner batch 3/3: canary r1"]
    assert all(p["hosts"] == "localhost" for p in plays[::2])
    imports = plays[1::2]
    assert [Path(p["ansible.builtin.import_playbook"]).name for p in imports] == ["switches.yml", "etcd.yml",
                                                                                 "nodes.yml"]
    assert imports[0]["vars"] == {"provisioner_hosts": "s1:s2", "switch_serial": "100%"}
    assert imports[2]["vars"] == {"provisioner_hosts": "n1:n2", "node_serial": "100%"}
