"""playbooks/: ansible-playbook --syntax-check and ansible-lint pass; the gate modules and the secrets filter."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.pipeline import compile_site
from provisioner.render import render
from tests.conftest import LAB, ROOT

PLAYBOOKS = ROOT / "playbooks"
BIN = Path(sys.executable).parent


def _load(path: Path, name: str):
    """A module of playbooks/ as Ansible would run it: ``ansible.module_utils.provisioner_files`` is the project's
    playbooks/module_utils file (Ansible ships it with the module)."""
    shared = "ansible.module_utils.provisioner_files"
    if shared not in sys.modules:
        utils = importlib.util.spec_from_file_location(shared, ROOT / "playbooks/module_utils/provisioner_files.py")
        sys.modules[shared] = importlib.util.module_from_spec(utils)
        utils.loader.exec_module(sys.modules[shared])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    for rel, text in render(compile_site(LAB).plan).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    return out


@pytest.mark.parametrize("playbook", ["site.yml", "switches.yml", "nodes.yml", "etcd.yml"])
def test_syntax_check(rendered: Path, playbook: str):
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(rendered / "ansible/hosts.yml"),
         str(PLAYBOOKS / playbook), "-e", f"rendered_dir={rendered}"],
        cwd=ROOT, capture_output=True, text=True, env={"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                                                        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                                                        "HOME": str(rendered)}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ansible_lint(tmp_path: Path):
    proc = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "playbooks"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_secrets_filter(monkeypatch):
    f = _load(PLAYBOOKS / "filter_plugins/provisioner_secrets.py", "provisioner_secrets")
    text = 'password "@secret:BGP_A@";\npassword "@secret:BGP_B@";\n'
    assert f.secret_refs(text) == ["BGP_A", "BGP_B"]
    monkeypatch.setenv("BGP_B", "from-env")
    out = f.inject_secrets(text, {"BGP_A": "from-vault"}, {})
    assert out == 'password "from-vault";\npassword "from-env";\n'
    monkeypatch.delenv("BGP_B")
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="BGP_B") as exc:
        f.inject_secrets(text, {"BGP_A": "from-vault"})
    assert "from-vault" not in str(exc.value)
    for bad in ("with space", 'qu"ote', "back\\slash", "bang!"):
        with pytest.raises(AnsibleFilterError, match="BGP_A contain") as exc:
            f.inject_secrets(text, {"BGP_A": bad, "BGP_B": "fine"})
        assert bad not in str(exc.value)


def test_bird_gate_parsing():
    m = _load(PLAYBOOKS / "roles/bird_node/library/bird_gate.py", "bird_gate")
    proto = """Name       Proto      Table      State  Since         Info
tor        BGP        ---        up     00:01:02.000  Established
  Description:    dc1-r1-tor
  BGP state:          Established
    Neighbor address: 198.18.11.254
    Neighbor AS:      65101
"""
    assert m.parse_protocol(proto) == {"state": "Established", "neighbor": "198.18.11.254"}
    routes = """Table master4:
198.19.0.0/24        blackhole [announce 00:01:02.000] * (200)
198.19.200.0/24      blackhole [announce 00:01:02.000] * (200)
"""
    assert m.parse_exports(routes) == ["198.19.0.0/24", "198.19.200.0/24"]
    assert m.parse_exports("No valid tables\n") == []


def test_frr_gate_parsing():
    m = _load(PLAYBOOKS / "roles/frr_switch/library/frr_gate.py", "frr_gate")
    data = {
        "198.18.11.1": {"remoteAs": 0, "localAs": 65101, "nbrInternalLink": True, "bgpState": "Active"},
        "198.18.250.0": {"remoteAs": 65001, "localAs": 65101, "nbrExternalLink": True, "bgpState": "Established"},
        "198.18.250.9": {"remoteAs": 65003, "localAs": 65001, "bgpState": "Connect"},
    }
    peers = m.parse_neighbors(json.dumps(data))
    assert peers["198.18.11.1"]["ebgp"] is False
    assert peers["198.18.250.0"] == {"state": "Established", "remote_as": 65001, "ebgp": True, "description": None}
    assert peers["198.18.250.9"]["ebgp"] is True
