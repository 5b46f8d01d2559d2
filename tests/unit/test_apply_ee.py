"""execution-environment.yml covers what the playbooks use, so they run unchanged from AWX / Automation Controller.

Every module a task of playbooks/ calls is either in ansible.builtin (ansible-core, which the EE installs), one
of the roles' own modules (roles/*/library) or in a collection the EE installs; the EE's ansible-core and
ansible-runner ranges hold the versions the project is tested with.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.conftest import ROOT

PLAYBOOKS = ROOT / "playbooks"
EE = ROOT / "execution-environment.yml"


def _keywords() -> set[str]:
    from ansible.playbook.block import Block
    from ansible.playbook.task import Task

    return set(Task.fattributes) | set(Block.fattributes) | {"local_action", "with_items", "with_dict"}


def _tasks(items) -> list[dict]:
    out = []
    for item in items or []:
        if not isinstance(item, dict):
            continue
        out.append(item)
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            out += _tasks(item.get(key))
    return out


def modules_used() -> set[str]:
    keywords = _keywords()
    found: set[str] = set()
    files = [*PLAYBOOKS.glob("*.yml"), *PLAYBOOKS.glob("roles/*/tasks/*.yml")]
    assert len(files) >= 8
    for f in files:
        for task in _tasks(yaml.safe_load(f.read_text())):
            if "hosts" in task:  # a play: its tasks were collected above
                continue
            found |= {k for k in task if k not in keywords and k not in ("block", "rescue", "always")}
    return found


def test_every_module_is_builtin_role_local_or_in_the_ee():
    ee = yaml.safe_load(EE.read_text())
    assert ee["version"] == 3
    galaxy = ee["dependencies"].get("galaxy") or {}
    collections = {c["name"] if isinstance(c, dict) else c for c in galaxy.get("collections", [])}
    own = {p.stem for p in [*PLAYBOOKS.glob("roles/*/library/*.py"), *PLAYBOOKS.glob("library/*.py")]}
    assert own == {"bird_gate", "frr_gate", "etcd_files", "install_files"}
    used = modules_used()
    assert "ansible.builtin.copy" in used and "bird_gate" in used  # the walk found real tasks
    missing = sorted(m for m in used if not (m.startswith("ansible.builtin.") or m in own
                                            or ".".join(m.split(".")[:2]) in collections))
    assert missing == [], f"modules not provided by execution-environment.yml: {missing}"


def test_ee_pins_the_tested_ansible_core_and_runner():
    deps = yaml.safe_load(EE.read_text())["dependencies"]
    for dist, key in (("ansible-core", "ansible_core"), ("ansible-runner", "ansible_runner")):
        spec = deps[key]["package_pip"]
        assert spec.startswith(dist), spec
        assert Version(version(dist)) in SpecifierSet(spec[len(dist):]), (dist, version(dist), spec)


def test_filter_plugins_need_only_the_standard_library():
    import ast
    import sys

    for f in Path(PLAYBOOKS / "filter_plugins").glob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("ansible", "__future__"), (f.name, name)
