"""Rollback: find a known-good tree and re-apply it through the same pre-flight, order and gates.

``--to RUN_ID``: the tree a previous run pushed (``runs/<site>/<RUN_ID>/tree``).
``--to GIT_REF``: the site as it was at that commit, rendered by the code and templates of that commit
(``git archive`` into a temporary directory, then ``provisioner render`` from there), so a template change is
rolled back too. Nothing in the working tree or the repository's refs is touched.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from ..write import read_tree
from .runner import find_run


def tree_from_run(runs_root: Path, run_id: str) -> dict[str, str] | None:
    run = find_run(runs_root, run_id)
    return run.tree() if run is not None else None


def tree_from_git(site_dir: Path, ref: str) -> tuple[dict[str, str], str]:
    """Render ``site_dir`` as of ``ref``; returns (tree, full commit id)."""
    site_dir = site_dir.resolve()
    try:
        top = Path(_git(site_dir, "rev-parse", "--show-toplevel").strip())
        commit = _git(site_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except InputError:
        raise InputError(f"--to {ref!r}: neither a run of this site nor a git commit") from None
    try:
        rel = site_dir.relative_to(top)
    except ValueError:
        raise InputError(f"{site_dir} is not inside the git repository {top}") from None
    with tempfile.TemporaryDirectory(prefix="provisioner-rollback-") as tmp:
        archive = subprocess.run(["git", "-C", str(top), "archive", "--format=tar", commit],
                                 capture_output=True, check=False)
        if archive.returncode != 0:
            raise InputError(f"git archive {ref}: {archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        if not (Path(tmp) / rel).is_dir():
            raise InputError(f"{rel} does not exist at {ref}")
        out = Path(tmp) / ".rollback-render"
        proc = subprocess.run([sys.executable, "-m", "provisioner", "render", str(rel), "--out", str(out)],
                              cwd=tmp, env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"}, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise InputError(f"rendering {rel} at {ref} failed: {(proc.stderr or proc.stdout).strip()[-1000:]}")
        return read_tree(out), commit


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InputError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout
