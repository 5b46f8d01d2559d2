"""A BGP password injected at apply time reaches the host's bird.conf and never the run directory.

A real ansible-runner run of the nodes play against localhost (connection local, paths and birdc pointed at
a temporary directory and a fake birdc), so no root, no daemons and no network are needed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from provisioner.apply.rollout import Batch
from provisioner.apply.runner import Options, create_run, run_rollout, secret_refs
from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import LAB

SECRET_NAME = "PROVISIONER_TEST_BGP_SECRET"
SECRET = "s3cr3t-bgp-value-4711"

FAKE_BIRDC = """#!/bin/sh
# fake birdc: BIRD is "not running" until started, then the ToR session is up and the exports are there
case "$*" in
  *"show status"*) [ -e "$STATE/started" ] ;;
  *"show protocols all"*) printf 'tor BGP --- up 00:00:01 Established\\n  BGP state:          Established\\n'
     printf '    Neighbor address: 198.18.11.254\\n' ;;
  *"show route export"*) printf '198.19.0.0/24        blackhole [announce]\\n198.19.200.0/24      blackhole\\n' ;;
  *"configure confirm"*) echo "Reconfiguration confirmed"; touch "$STATE/confirmed" ;;
  *"configure undo"*) echo "Undo requested"; touch "$STATE/undone" ;;
  *'configure "'*' timeout '*) printf 'Undo scheduled in 300 s\\nReconfigured\\n'; touch "$STATE/configured" ;;
  *) echo "syntax error, unexpected '/'"; exit 1 ;;
esac
"""


@pytest.fixture
def secret_site(tmp_path: Path) -> Path:
    site = tmp_path / "inventories" / "lab"
    shutil.copytree(LAB, site)
    text = (site / "site.yaml").read_text()
    (site / "site.yaml").write_text(text.replace("bgp:\n", f"bgp:\n  password: {SECRET_NAME}\n", 1))
    return site


def _grep(directory: Path, needle: str) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(directory):
        for f in files:
            p = Path(dirpath) / f
            if needle.encode() in p.read_bytes():
                hits.append(str(p))
    return hits


@pytest.mark.parametrize(("check", "running"), [(True, False), (False, False), (False, True)],
                         ids=["check", "start", "configure"])
def test_secret_never_in_run_artifacts(secret_site: Path, tmp_path: Path, monkeypatch, check: bool,
                                       running: bool):
    plan = compile_site(secret_site).plan
    tree = render(plan)
    assert f"@secret:{SECRET_NAME}@" in tree["nodes/dc1-r1-n1/bird.conf"]
    assert secret_refs(tree) == [SECRET_NAME]
    host = tmp_path / "host"
    (host / "state").mkdir(parents=True)
    if running:  # BIRD runs an older config: the new one goes in with `configure "FILE" timeout N`, then confirm
        (host / "state" / "started").touch()
        (host / "bird.conf").write_text("# old\n")
    birdc = tmp_path / "birdc"
    birdc.write_text(FAKE_BIRDC)
    birdc.chmod(0o755)
    import grp
    import pwd

    group = grp.getgrgid(os.getgid()).gr_name
    user = pwd.getpwuid(os.getuid()).pw_name
    overlay = tmp_path / "overlay.yml"
    overlay.write_text(f"""all:
  hosts:
    dc1-r1-n1:
      ansible_connection: local
      ansible_python_interpreter: {sys.executable}
      bird_conf: {host}/bird.conf
      bird_conf_owner: {user}
      bird_conf_group: {group}
      cni_conflist: {host}/10-provisioner.conflist
      birdc_cmd: env STATE={host}/state {birdc}
      bird_start_cmd: touch {host}/state/started
      health_conf: {host}/ahc.conf
      health_services_conf: {host}/ahc.d/services.conf
      health_bird_set: {host}/anycast-prefixes.conf
      health_start_cmd: touch {host}/state/health
      health_restart_cmd: touch {host}/state/health
      bird_validate_cmd: /bin/true %s
      gate_timeout: 5
""")
    run = create_run(tmp_path / "runs" / "lab", tree, {"status": "running"})
    opts = Options(inventories=[run.tree_dir / "ansible/hosts.yml", overlay], check=check,
                   extravars={"rendered_dir": str(run.tree_dir), "pki_dir": "", "gate_timeout": 5})
    monkeypatch.setenv(SECRET_NAME, SECRET)
    [outcome] = run_rollout(run, [Batch("canary dc1-r1", "canary", ("dc1-r1-n1",))], opts, [SECRET_NAME])
    assert outcome.status == "ok", outcome.messages
    assert os.environ[SECRET_NAME] == SECRET  # restored after the run
    assert not any(k.startswith("(secrets)") for k in outcome.messages)  # nothing had to be redacted
    assert _grep(run.path, SECRET) == []
    command = json.loads((run.path / "ansible/artifacts/rollout/command").read_text())
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"  # ansible-runner's default is False
    if running:
        assert (host / "state" / "configured").exists() and (host / "state" / "confirmed").exists()
        assert not (host / "state" / "undone").exists()
        assert not list(host.glob("bird.conf.*~"))  # the backup is removed after the gate passed
    if check:
        assert not (host / "bird.conf").exists()  # check mode changes nothing
        assert outcome.diffs["dc1-r1-n1"]  # ...but says what would change
    else:
        text = (host / "bird.conf").read_text()
        assert f'password "{SECRET}";' in text and "@secret:" not in text
        assert outcome.hosts["dc1-r1-n1"]["changed"] >= 2
