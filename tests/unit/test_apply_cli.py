"""apply/rollback at the command line without hosts: lazy imports, confirmation, bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LAB, ROOT
from tests.helpers import run_cli


def test_validate_render_plan_do_not_import_ansible_or_paramiko(tmp_path: Path):
    code = f"""
import sys
from provisioner.cli import main
for args in (["validate", {str(LAB)!r}], ["render", {str(LAB)!r}, "--out", {str(tmp_path / 'out')!r}],
             ["plan", {str(LAB)!r}, "--out", {str(tmp_path / 'out')!r}]):
    assert main(args) == 0, args
main(["--help"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ansible", "ansible_runner", "paramiko", "rich"))
print(heavy)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture
def site(site_copy) -> Path:
    return site_copy("lab")


def test_refuses_without_terminal_or_yes(site: Path, tmp_path: Path):
    code, _out, err = run_cli("apply", str(site), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert "no terminal" in err and "--yes" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "half"], "--batch"),
    (["--canary", "dc9-r9"], "no rack named"),
    (["--limit", "nothing-matches-this"], "matches no host"),
])
def test_bad_input_exits_2(site: Path, tmp_path: Path, args: list[str], message: str):
    code, _out, err = run_cli("apply", str(site), "--yes", "--runs-dir", str(tmp_path / "runs"),
                              "--pki", str(tmp_path / "pki"), *args)
    assert code == 2, err
    assert message in err
    runs = list((tmp_path / "runs" / "lab").iterdir())
    meta = json.loads(next(p for p in runs if p.is_dir()).joinpath("run.json").read_text())
    assert meta["status"] == "bad input"


def test_missing_pki_is_bad_input(site: Path, tmp_path: Path):
    code, _out, err = run_cli("apply", str(site), "--yes", "--runs-dir", str(tmp_path / "runs"),
                              "--pki", str(tmp_path / "no-pki"), "--limit", "etcd")
    assert code == 2
    assert "provisioner pki" in err


def test_stale_lock_is_bad_input(site: Path, tmp_path: Path):
    (site / "allocations.yaml").unlink()
    code, _out, err = run_cli("apply", str(site), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "provisioner render" in err


def test_rollback_unknown_target(site: Path, tmp_path: Path):
    code, _out, err = run_cli("rollback", str(site), "--to", "no-such-run-or-ref", "--yes",
                              "--runs-dir", str(tmp_path / "runs"))
    assert code == 2
    assert "neither a run" in err or "not inside the git repository" in err
