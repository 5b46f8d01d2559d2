"""Daemons tier: every rendered BIRD file passes ``bird -p -c`` and every FRR file ``vtysh --dryrun -f``.

Both inventories are rendered with the real CLI into tmp (``--out``), so what is parsed is what ships.
The parsers run two at a time (the CI box has two cores); the negative tests prove a broken config is
really rejected, so a parser that accepts anything cannot make this tier pass.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, LAB, require_binary
from tests.helpers import run_cli

WORKERS = 2
EXPECTED = {  # inventory -> (BIRD files: nodes + control-plane VMs, FRR files: ToRs + spines)
    "example": (720 + 3, 36 + 6),
    "lab": (12 + 3, 6 + 3),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, site in (("example", EXAMPLE), ("lab", LAB)):
        dest = tmp_path_factory.mktemp("rendered") / name
        code, stdout, stderr = run_cli("render", str(site), "--out", str(dest))
        assert code == 0, f"render {name} failed ({code}):\n{stdout}\n{stderr}"
        out[name] = dest
    return out


def bird_files(root: Path) -> list[Path]:
    return sorted([*root.glob("nodes/*/bird.conf"), *root.glob("control-plane/*/bird.conf")])


def frr_files(root: Path) -> list[Path]:
    return sorted([*root.glob("tors/*/frr.conf"), *root.glob("spines/*/frr.conf")])


def parse_all(command: list[str], files: list[Path]) -> list[str]:
    """Run ``command + [file]`` for every file, two at a time; return one message per failure."""

    def one(path: Path) -> str | None:
        p = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            return f"{path}: exit {p.returncode}: {(p.stdout + p.stderr).strip()[-500:]}"
        return None

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [msg for msg in pool.map(one, files) if msg]


@pytest.mark.parametrize("inventory", sorted(EXPECTED))
def test_every_bird_config_parses(rendered, inventory):
    bird = require_binary("bird")
    files = bird_files(rendered[inventory])
    assert len(files) == EXPECTED[inventory][0]
    failures = parse_all([bird, "-p", "-c"], files)
    assert not failures, f"{len(failures)} of {len(files)} BIRD configs rejected:\n" + "\n".join(failures[:10])


@pytest.mark.parametrize("inventory", sorted(EXPECTED))
def test_every_frr_config_parses(rendered, inventory):
    vtysh = require_binary("vtysh")
    files = frr_files(rendered[inventory])
    assert len(files) == EXPECTED[inventory][1]
    failures = parse_all([vtysh, "--dryrun", "-f"], files)
    assert not failures, f"{len(failures)} of {len(files)} FRR configs rejected:\n" + "\n".join(failures[:10])


BIRD_BREAKAGES = [
    ("undefined-set", "if net ~ ANNOUNCE then accept;", "if net ~ ANNOUNCES then accept;"),
    ("missing-semicolon", "  direct;\n", "  direct\n"),
    ("bad-option", "  merge paths on;\n", "  merge pathz on;\n"),
]


@pytest.mark.parametrize(("old", "new"), [b[1:] for b in BIRD_BREAKAGES], ids=[b[0] for b in BIRD_BREAKAGES])
def test_bird_rejects_a_broken_config(rendered, tmp_path, old, new):
    bird = require_binary("bird")
    good = (rendered["lab"] / "nodes" / "dc1-r1-n1" / "bird.conf").read_text()
    assert old in good
    broken = tmp_path / "bird.conf"
    broken.write_text(good.replace(old, new, 1))
    assert parse_all([bird, "-p", "-c"], [broken]), "bird accepted a broken config"


FRR_BREAKAGES = [
    ("misspelt-command", "  neighbor SERVERS maximum-prefix", "  neighbor SERVERS maximum-prefx"),
    ("too-many-paths", "  maximum-paths ibgp 3\n", "  maximum-paths ibgp 9999\n"),
    ("bad-prefix", "DEFAULT-ONLY seq 5 permit 0.0.0.0/0", "DEFAULT-ONLY seq 5 permit 0.0.0.0/33"),
]


@pytest.mark.parametrize(("old", "new"), [b[1:] for b in FRR_BREAKAGES], ids=[b[0] for b in FRR_BREAKAGES])
def test_vtysh_rejects_a_broken_config(rendered, tmp_path, old, new):
    vtysh = require_binary("vtysh")
    good = (rendered["lab"] / "tors" / "dc1-r1-tor" / "frr.conf").read_text()
    assert old in good
    broken = tmp_path / "frr.conf"
    broken.write_text(good.replace(old, new, 1))
    assert parse_all([vtysh, "--dryrun", "-f"], [broken]), "vtysh accepted a broken config"
