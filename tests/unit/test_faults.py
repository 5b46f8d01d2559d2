"""Fault suite: kill -9 during render, full and read-only file systems, a mount point as --out, and
concurrent runs. Real processes and real tmpfs mounts (needs root, which CI has; locally skipped).

The promises checked: a failed write is exit 3 with one message and no traceback; nothing is left
half-written (the tree is the previous or the new one, the lock is the previous or the new one, and
never a new tree with an old lock); the next run cleans what a killed run left.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.write import read_tree
from tests.conftest import EXAMPLE, LAB, ROOT, require_root
from tests.helpers import run_cli

NEW_NODE = "          - {hostname: dc1-r1-n9, address: 198.18.11.9, hardware: amd-128c-512g}\n"


def add_lab_node(site: Path) -> None:
    text = (site / "site.yaml").read_text()
    anchor = "          - {hostname: dc1-r1-n2,"
    assert anchor in text
    (site / "site.yaml").write_text(text.replace(anchor, NEW_NODE + anchor, 1))


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m", ro: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        if ro:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> None:
    """Fill the file system of ``directory`` to the last byte."""
    with open(directory / "filler", "wb") as fh:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                fh.write(chunk)
                fh.flush()
    with contextlib.suppress(OSError):
        for i in range(100000):  # the last inodes and fragments
            (directory / f"f{i}").write_bytes(b"x" * 512)


def state(site: Path, out: Path) -> tuple[bytes | None, dict[str, str]]:
    lock = site / "allocations.yaml"
    return (lock.read_bytes() if lock.exists() else None), read_tree(out)


def leftovers(*dirs: Path) -> list[str]:
    names = []
    for d in dirs:
        if d.is_dir():
            names += [p.name for p in d.iterdir() if any(m in p.name for m in (".new-", ".old-", ".tmp-"))]
    return sorted(names)


@pytest.fixture
def root_only() -> None:
    require_root()


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    site = tmp_path / "inventories" / "lab"
    shutil.copytree(LAB, site)
    return site


def test_full_disk_for_the_tree_is_exit_3_and_changes_nothing(root_only, lab: Path, tmp_path: Path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        out = disk / "out"
        assert run_cli("render", str(lab), "--out", str(out))[0] == 0
        add_lab_node(lab)
        fill(disk)
        before = state(lab, out)
        code, _, err = run_cli("render", str(lab), "--out", str(out))
        assert code == 3, err
        assert "No space left on device" in err and "nothing was changed" in err and "Traceback" not in err
        assert state(lab, out) == before
        assert leftovers(disk, out, lab) == []


def test_full_disk_for_the_lock_keeps_the_old_tree(root_only, tmp_path: Path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        site = disk / "inventories" / "lab"
        shutil.copytree(LAB, site)
        out = tmp_path / "out"
        assert run_cli("render", str(site), "--out", str(out))[0] == 0
        add_lab_node(site)
        fill(disk)
        before = state(site, out)
        code, _, err = run_cli("render", str(site), "--out", str(out))
        assert code == 3, err
        assert "allocations.yaml" in err and "nothing was changed" in err and "Traceback" not in err
        assert state(site, out) == before  # not a new tree with the old lock
        assert leftovers(site, tmp_path) == []
        # Space again: the same render goes through.
        (disk / "filler").unlink()
        for p in disk.glob("f*"):
            p.unlink()
        assert run_cli("render", str(site), "--out", str(out))[0] == 0
        assert "nodes/dc1-r1-n9/bird.conf" in read_tree(out)


def test_read_only_output_is_exit_3(root_only, lab: Path, tmp_path: Path):
    with tmpfs(tmp_path / "ro", ro=True) as ro:
        lock_before = (lab / "allocations.yaml").read_bytes()
        add_lab_node(lab)
        code, _, err = run_cli("render", str(lab), "--out", str(ro / "out"))
        assert code == 3 and "Read-only file system" in err and "Traceback" not in err
        assert (lab / "allocations.yaml").read_bytes() == lock_before


def test_out_on_a_mount_point_swaps_in_place(root_only, lab: Path, tmp_path: Path):
    """rename() of a mount point is EBUSY: the tree is staged inside it and moved in entry by entry."""
    with tmpfs(tmp_path / "mnt") as out:
        assert run_cli("render", str(lab), "--out", str(out))[0] == 0
        first = read_tree(out)
        add_lab_node(lab)
        code, _, err = run_cli("render", str(lab), "--out", str(out))
        assert code == 0, err
        second = read_tree(out)
        assert "nodes/dc1-r1-n9/bird.conf" in second and second != first
        assert os.path.ismount(out)
        assert leftovers(out, tmp_path) == []
        assert run_cli("plan", str(lab), "--out", str(out), "--exit-code")[0] == 0


def test_read_only_parent_with_a_writable_tree_swaps_in_place(root_only, lab: Path, tmp_path: Path):
    with tmpfs(tmp_path / "parent", "1m") as parent:
        (parent / "out").mkdir()
        with tmpfs(parent / "out") as out:
            assert run_cli("render", str(lab), "--out", str(out))[0] == 0
            subprocess.run(["mount", "-o", "remount,ro", str(parent)], check=True)
            add_lab_node(lab)
            code, _, err = run_cli("render", str(lab), "--out", str(out))
            assert code == 0, err
            assert "nodes/dc1-r1-n9/bird.conf" in read_tree(out)


def test_concurrent_renders_are_serialised(root_only, lab: Path, tmp_path: Path):
    out = tmp_path / "out"
    assert run_cli("render", str(lab), "--out", str(out))[0] == 0
    add_lab_node(lab)
    procs = [subprocess.Popen([sys.executable, "-m", "provisioner", "render", str(lab), "--out", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert sum("lock file" in stdout for stdout, _, _ in results) == 1  # exactly one wrote the lock
    assert run_cli("plan", str(lab), "--out", str(out), "--exit-code")[0] == 0
    assert leftovers(tmp_path, out, lab) == []


def _rack(n: int) -> str:
    return (f"      - name: dc2-k{n}\n        asn: {65400 + n}\n        subnet: 10.2.{100 + n}.0/24\n"
            f"        tor: {{name: dc2-k{n}-tor, router_id: 10.254.2.{100 + n}}}\n        node_groups:\n"
            f"          - {{count: 20, name_pattern: 'dc2-k{n}-n{{index:02d}}', hardware: amd-128c-512g}}\n")


def test_kill_9_during_render_leaves_old_or_new_and_is_cleaned_up(root_only, tmp_path: Path):
    """Each round adds a rack to the example and kills the render at a random moment."""
    rounds = 6
    site = tmp_path / "inventories" / "example"
    shutil.copytree(EXAMPLE, site)
    scratch = tmp_path / "scratch" / "inventories" / "example"
    shutil.copytree(EXAMPLE, scratch)
    # The expected tree and lock after each round, rendered without interruption.
    texts = [(EXAMPLE / "site.yaml").read_text()]
    for n in range(1, rounds + 1):
        texts.append(texts[-1].replace("  - name: dc3\n", _rack(n) + "  - name: dc3\n", 1))
    expected: list[tuple[bytes, dict[str, str]]] = []
    for text in texts:
        (scratch / "site.yaml").write_text(text)
        assert run_cli("render", str(scratch), "--out", str(tmp_path / "scratch-out"))[0] == 0
        expected.append(state(scratch, tmp_path / "scratch-out"))
    out = tmp_path / "out"
    assert run_cli("render", str(site), "--out", str(out))[0] == 0
    rng = random.Random(14)
    killed_mid_write = 0
    for n in range(1, rounds + 1):
        (site / "site.yaml").write_text(texts[n])
        proc = subprocess.Popen([sys.executable, "-m", "provisioner", "render", str(site), "--out", str(out)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lock, tree = state(site, out)
        old, new = expected[n - 1], expected[n]
        assert (lock, tree) in (old, new, (new[0], old[1])), f"round {n}: a state that is neither old nor new"
        killed_mid_write += (lock, tree) != new
        if (lock, tree) != new or leftovers(tmp_path, out, site):
            # Killed before the swap, or after it while removing the previous tree: the next run repairs it.
            code, _, err = run_cli("render", str(site), "--out", str(out))
            assert code == 0, err
            assert state(site, out) == new
        assert leftovers(tmp_path, out, site) == []
    assert killed_mid_write >= 1  # at least one kill landed before the render finished


def test_sigint_while_writing_exits_130_and_changes_nothing(root_only, tmp_path: Path):
    """Ctrl-C the moment the new tree is being staged: exit 130, one line, the old tree and lock."""
    site = tmp_path / "inventories" / "example"
    shutil.copytree(EXAMPLE, site)
    out = tmp_path / "out"
    assert run_cli("render", str(site), "--out", str(out))[0] == 0
    (site / "site.yaml").write_text((site / "site.yaml").read_text().replace(
        "  - name: dc3\n", _rack(1) + "  - name: dc3\n", 1))
    old = state(site, out)
    for _attempt in range(5):
        # A changed file in every node's directory: a full rewrite, so the staging lasts long enough.
        for conf in out.glob("nodes/*/bird.conf"):
            conf.write_text(conf.read_text() + "# stale\n")
        old = state(site, out)
        proc = subprocess.Popen([sys.executable, "-m", "provisioner", "render", str(site), "--out", str(out)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        staging = tmp_path / f".out.new-{proc.pid}"
        deadline = time.monotonic() + 60
        while not staging.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err
        assert leftovers(tmp_path, out, site) == []
        if proc.returncode == 130:
            assert err.strip() == "interrupted"
            assert state(site, out) == old
            return
        assert proc.returncode == 0, err  # finished before the signal: try again
    pytest.fail("the render always finished before SIGINT arrived")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_immutable_parent_swaps_in_place_and_immutable_tree_is_exit_3(root_only, lab: Path, tmp_path: Path):
    parent = tmp_path / "parent"
    out = parent / "out"
    parent.mkdir()
    assert run_cli("render", str(lab), "--out", str(out))[0] == 0
    add_lab_node(lab)
    with immutable(parent):
        code, _, err = run_cli("render", str(lab), "--out", str(out))
        assert code == 0, err
    assert "nodes/dc1-r1-n9/bird.conf" in read_tree(out)
    assert leftovers(parent, out) == []
    text = (lab / "site.yaml").read_text()
    (lab / "site.yaml").write_text(text.replace(NEW_NODE, NEW_NODE.replace("n9", "n8").replace(".9,", ".8,")))
    before = state(lab, out)
    with immutable(parent), immutable(out):
        code, _, err = run_cli("render", str(lab), "--out", str(out))
    assert code == 3 and "Operation not permitted" in err and "nothing was changed" in err, err
    assert state(lab, out) == before
    assert leftovers(parent, out) == []
