"""One place for paths: shipped data through importlib.resources, a site's project root from the site."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner import paths
from provisioner import render as render_mod
from provisioner.write import read_tree
from tests.conftest import LAB, ROOT
from tests.helpers import run_cli


def test_shipped_data_is_the_repository_top_level_in_a_checkout():
    # provisioner/templates etc. are symlinks: editing templates/ is editing what the package ships.
    assert paths.templates_dir() == (ROOT / "templates").resolve()
    assert paths.playbooks_dir() == (ROOT / "playbooks").resolve()
    assert paths.ansible_cfg() == (ROOT / "ansible.cfg").resolve()
    assert set(render_mod.SCOPES) <= {p.name for p in paths.templates_dir().iterdir()}
    assert (paths.playbooks_dir() / "site.yml").is_file()


def test_site_under_inventories_has_its_grandparent_as_project_root(tmp_path: Path, monkeypatch):
    site = tmp_path / "proj" / "inventories" / "dc-x"
    site.mkdir(parents=True)
    (site / "site.yaml").write_text("site: x\n")
    monkeypatch.chdir("/")
    root = tmp_path / "proj"
    for given in (site, site / "site.yaml"):
        assert paths.project_root(given) == root
        assert paths.rendered_dir(given) == root / "rendered" / "dc-x"
        assert paths.secrets_dir(given) == root / "secrets" / "dc-x"
        assert paths.runs_root(given) == root / "runs"
        assert paths.lab_root(given) == root / ".lab"


def test_other_site_directory_or_a_name_uses_the_working_directory(tmp_path: Path, monkeypatch):
    site = tmp_path / "elsewhere" / "mysite"
    site.mkdir(parents=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert paths.project_root(site) == cwd
    assert paths.rendered_dir(site) == cwd / "rendered" / "mysite"
    assert paths.project_root("lab") == cwd
    assert paths.lab_root("lab") == cwd / ".lab"


def test_render_refuses_a_scope_without_templates_and_keeps_the_tree(tmp_path: Path, monkeypatch):
    broken = tmp_path / "templates"
    shutil.copytree(paths.templates_dir(), broken)
    shutil.rmtree(broken / "tor")
    out = tmp_path / "out"
    code, _, _ = run_cli("render", str(_lab_copy(tmp_path)), "--out", str(out))
    assert code == 0
    before = read_tree(out)
    monkeypatch.setattr(render_mod, "TEMPLATES", broken)
    render_mod.environment.cache_clear()
    try:
        code, stdout, stderr = run_cli("render", str(_lab_copy(tmp_path)), "--out", str(out))
    finally:
        render_mod.environment.cache_clear()
    assert code == 2
    assert "no templates for scope 'tor'" in stderr and "Traceback" not in stderr + stdout
    assert read_tree(out) == before  # the 48-file tree is not swapped for a smaller one


def test_render_refuses_when_no_templates_at_all(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(render_mod, "TEMPLATES", tmp_path / "nothing")
    render_mod.environment.cache_clear()
    try:
        code, _, stderr = run_cli("render", str(_lab_copy(tmp_path)), "--out", str(tmp_path / "out"))
    finally:
        render_mod.environment.cache_clear()
    assert code == 2 and "no templates for scope 'site'" in stderr
    assert not (tmp_path / "out").exists()


def _lab_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "inventories" / "lab"
    if not dest.exists():
        shutil.copytree(LAB, dest, ignore=shutil.ignore_patterns(".provisioner.lock"))
    return dest


@pytest.mark.parametrize("name", ["templates", "playbooks", "ansible.cfg"])
def test_package_entries_are_symlinks_to_the_top_level(name: str):
    link = ROOT / "provisioner" / name
    assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()
