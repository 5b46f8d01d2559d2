"""Golden tier: the lab site renders byte for byte to the committed tree rendered/lab/.

A template or plan change therefore shows up as a reviewable diff of rendered/lab/. When the change is
intended, regenerate and commit the tree:

    .venv/bin/provisioner render inventories/lab
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.conftest import LAB, ROOT
from tests.helpers import run_cli

GOLDEN = ROOT / "rendered" / "lab"
REGENERATE = ("rendered/lab/ differs from what inventories/lab renders to. If the change is intended, regenerate "
              "it with `.venv/bin/provisioner render inventories/lab` and commit rendered/lab/ with the change.")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("golden") / "lab"
    code, stdout, stderr = run_cli("render", str(LAB), "--out", str(out))
    assert code == 0, f"render failed ({code}):\n{stdout}\n{stderr}"
    return tree(out)


def test_golden_tree_exists():
    assert GOLDEN.is_dir() and any(GOLDEN.rglob("*")), f"{GOLDEN} is missing. {REGENERATE}"


def test_same_set_of_files(fresh):
    golden = tree(GOLDEN)
    missing = sorted(set(fresh) - set(golden))
    extra = sorted(set(golden) - set(fresh))
    assert not missing and not extra, (
        f"{REGENERATE}\n  rendered but not in rendered/lab/: {missing}"
        f"\n  in rendered/lab/ but no longer rendered: {extra}"
    )


def test_every_file_is_byte_identical(fresh):
    golden = tree(GOLDEN)
    diffs = []
    for name in sorted(set(fresh) & set(golden)):
        if fresh[name] != golden[name]:
            diff = difflib.unified_diff(golden[name].decode(errors="replace").splitlines(),
                                        fresh[name].decode(errors="replace").splitlines(),
                                        f"rendered/lab/{name}", f"render of inventories/lab: {name}", lineterm="", n=1)
            diffs.append("\n".join(list(diff)[:40]))
    assert not diffs, f"{REGENERATE}\n{len(diffs)} file(s) differ:\n" + "\n".join(diffs[:5])


def test_golden_network_configs_are_covered():
    """The network configs are part of the golden tree (not just whatever happened to be committed)."""
    names = set(tree(GOLDEN))
    for expected in ("nodes/dc1-r1-n1/bird.conf", "control-plane/cp1/bird.conf", "tors/dc1-r1-tor/frr.conf",
                     "spines/dc1-spine1/frr.conf"):
        assert expected in names, f"rendered/lab/{expected} is missing. {REGENERATE}"


def test_no_secret_value_or_unresolved_markup_in_the_tree():
    for name, data in tree(GOLDEN).items():
        text = data.decode()
        assert "{{" not in text and "{%" not in text, f"unrendered template markup in rendered/lab/{name}"
