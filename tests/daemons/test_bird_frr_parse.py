"""Daemons tier: every rendered BIRD file passes ``bird -p -c`` and every FRR file ``vtysh --dryrun -f``.

The three inventories are rendered with the real CLI into tmp (``--out``), so what is parsed is what ships.
The parsers run two at a time (the CI box has two cores); the negative tests prove a broken config is
really rejected, so a parser that accepts anything cannot make this tier pass.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provisioner.health import HEALTH
from tests.conftest import EXAMPLE, INVENTORIES, LAB, require_binary, require_root
from tests.helpers import run_cli

WORKERS = 2
EXPECTED = {  # inventory -> (BIRD files: nodes + control-plane VMs, FRR files: ToRs + spines)
    "example": (720 + 3, 36 + 6),
    "lab": (12 + 3, 6 + 3),
    "mid": (120 + 3, 12 + 6),  # per-DC pod pools: three aggregates in every filter
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, site in (("example", EXAMPLE), ("lab", LAB), ("mid", INVENTORIES / "mid")):
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


# Each BIRD config includes its health set at the absolute path anycast-healthchecker rewrites; every parse
# runs in a private mount namespace with a tmpfs on that directory holding the file rendered beside the config.
BIRD_PARSE = r"""
set -u
mount -t tmpfs provisioner-test "$(dirname "$INCLUDE")" || exit 90
for f in "$@"; do
  cp "$(dirname "$f")/anycast-prefixes.conf" "$INCLUDE" 2>/dev/null || : > "$INCLUDE"
  out=$("$BIRD" -p -c "$f" 2>&1) || printf '%s: %s\n' "$f" "$out"
done
"""


def bird_parse(files: list[Path]) -> list[str]:
    """``bird -p -c`` of every file (with its include in place); one message per rejected file."""
    bird = require_binary("bird")
    require_root()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "BIRD": bird, "INCLUDE": HEALTH.bird_include}
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", BIRD_PARSE, "sh",
                        *map(str, files)], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, f"could not set up the include directory: {p.stderr}"
    return [line for line in p.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("inventory", sorted(EXPECTED))
def test_every_bird_config_parses(rendered, inventory):
    files = bird_files(rendered[inventory])
    assert len(files) == EXPECTED[inventory][0]
    failures = bird_parse(files)
    assert not failures, f"{len(failures)} of {len(files)} BIRD configs rejected:\n" + "\n".join(failures[:10])


@pytest.mark.parametrize("inventory", sorted(EXPECTED))
def test_every_frr_config_parses(rendered, inventory):
    vtysh = require_binary("vtysh")
    files = frr_files(rendered[inventory])
    assert len(files) == EXPECTED[inventory][1]
    failures = parse_all([vtysh, "--dryrun", "-f"], files)
    assert not failures, f"{len(failures)} of {len(files)} FRR configs rejected:\n" + "\n".join(failures[:10])


BIRD_BREAKAGES = [
    ("undefined-symbol", "return net = POD || healthy_anycast();", "return net = PODS || healthy_anycast();"),
    ("missing-semicolon", "  direct;\n", "  direct\n"),
    ("bad-option", "  merge paths on;\n", "  merge pathz on;\n"),
]


@pytest.mark.parametrize(("old", "new"), [b[1:] for b in BIRD_BREAKAGES], ids=[b[0] for b in BIRD_BREAKAGES])
def test_bird_rejects_a_broken_config(rendered, tmp_path, old, new):
    node = rendered["lab"] / "nodes" / "dc1-r1-n1"
    good = (node / "bird.conf").read_text()
    assert old in good
    broken = tmp_path / "bird.conf"
    broken.write_text(good.replace(old, new, 1))
    shutil.copy(node / "anycast-prefixes.conf", tmp_path / "anycast-prefixes.conf")
    assert not bird_parse([node / "bird.conf"]), "the unbroken config must parse in the same setting"
    assert bird_parse([broken]), "bird accepted a broken config"


def test_bird_rejects_a_config_whose_health_set_is_missing(rendered, tmp_path):
    """The include is real: without the health set file BIRD refuses the node config."""
    node = rendered["lab"] / "nodes" / "dc1-r1-n1"
    lonely = tmp_path / "bird.conf"
    shutil.copy(node / "bird.conf", lonely)
    (tmp_path / "anycast-prefixes.conf").write_text("# empty: no define\n")
    assert bird_parse([lonely]), "bird accepted a config whose ACAST_PS_ADVERTISE is undefined"


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
