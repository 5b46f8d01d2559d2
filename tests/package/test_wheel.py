"""Package tier: the wheel a new maintainer builds works outside the checkout.

Builds the wheel from a copy of the source, installs it with its dependencies (pinned by
constraints.txt) into a fresh virtualenv outside the checkout, and runs that install's ``provisioner``
from an unrelated working directory: both shipped sites must render byte for byte what the checkout
renders, and the wheel must carry every template and playbook file. Needs the package index (as
scripts/setup does); takes ~30-45 s, most of it pip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from provisioner.pipeline import compile_site
from provisioner.render import render
from provisioner.write import read_tree
from tests.conftest import EXAMPLE, LAB, ROOT

pytestmark = pytest.mark.package

SOURCE = ("pyproject.toml", "README.md", "constraints.txt", "ansible.cfg", "provisioner", "templates", "playbooks")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".provisioner.lock")


def _run(*cmd: str | Path, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCE:  # a copy, so the build leaves no build/ or egg-info in the checkout
        path = ROOT / name
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, src / name, symlinks=True, ignore=JUNK)
        else:
            shutil.copy2(path, src / name, follow_symlinks=False)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base / "dist", src, cwd=base)
    (wheel,) = (base / "dist").glob("provisioner-*.whl")
    env_dir = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", env_dir, cwd=base)
    _run(sys.executable, "-m", "pip", "--python", env_dir / "bin" / "python", "install", "-q",
         "-c", ROOT / "constraints.txt", wheel, cwd=base)
    return env_dir


def _installed_package(venv: Path) -> Path:
    out = _run(venv / "bin" / "python", "-c", "import provisioner; print(provisioner.__file__)", cwd=venv).stdout
    return Path(out.strip()).parent


def test_the_install_is_the_wheel_not_the_checkout(venv: Path):
    package = _installed_package(venv)
    assert package.is_relative_to(venv) and not package.is_relative_to(ROOT)
    assert (package / "templates").is_dir() and not (package / "templates").is_symlink()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version in _run(venv / "bin" / "provisioner", "--version", cwd=venv).stdout


def test_wheel_carries_every_template_playbook_and_ansible_cfg(venv: Path):
    package = _installed_package(venv)
    for name in ("templates", "playbooks"):
        shipped, source = _files(package / name), _files(ROOT / name)
        assert sorted(shipped) == sorted(source), f"{name}/ in the wheel differs from the repository"
        assert shipped == source
    assert (package / "ansible.cfg").read_bytes() == (ROOT / "ansible.cfg").read_bytes()


@pytest.mark.parametrize("site", [LAB, EXAMPLE], ids=["lab", "example"])
def test_both_sites_render_byte_identical_from_another_directory(venv: Path, site: Path, tmp_path: Path):
    project = tmp_path / "project"
    shutil.copytree(site, project / "inventories" / site.name, ignore=JUNK)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A relative SITE from an unrelated directory: the default target is the site's project's rendered/.
    proc = _run(venv / "bin" / "provisioner", "render", os.path.relpath(project / "inventories" / site.name, elsewhere),
                cwd=elsewhere)
    out = project / "rendered" / site.name
    assert f"into {out}" in proc.stdout
    tree = read_tree(out)
    assert len(tree) > 40
    assert tree == render(compile_site(site).plan)
    if site == LAB:
        assert _files(out) == _files(ROOT / "rendered" / "lab")  # the golden tree, byte for byte
    assert not (elsewhere / "rendered").exists()
