"""Small helpers for tests: run the CLI in-process or as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from provisioner.cli import cli, main

ROOT = Path(__file__).resolve().parent.parent


# A rack of 20 nodes for dc2 of the example site, and where it goes: the "add a rack" change.
NEW_DC2_RACK = """\
      - name: dc2-r13
        asn: 65213
        subnet: 10.2.13.0/24
        tor: {name: dc2-r13-tor, router_id: 10.254.2.13}
        node_groups:
          - {count: 20, name_pattern: 'dc2-r13-n{index:02d}', hardware: amd-128c-512g}
"""


def add_dc2_rack(site_text: str) -> str:
    marker = "  - name: dc3\n"
    assert marker in site_text
    return site_text.replace(marker, NEW_DC2_RACK + marker, 1)


# Lists whose items errors name by their own name ("rack dc1-r2: asn: ..."), see load.named().
_NAMED_LISTS = ("dcs", "racks", "spines", "nodes", "node_groups", "pod_pools", "control_plane", "etcd",
                "etcd_events", "upstreams")


def field_in_object(dotted: str) -> str:
    """What an error prints after the object's name for a dotted path: ``dcs[0].racks[1].asn`` -> ``asn``."""
    names = "|".join(_NAMED_LISTS)
    found = list(re.finditer(rf"(?:^|(?<=\.))(?:{names})\[[0-9]+\]\.?", dotted))
    return dotted[found[-1].end():] if found else dotted


def wait_for(fn: Callable[[], object], timeout: float = 60, interval: float = 1.0):
    """Poll ``fn`` until it returns something truthy or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run provisioner in-process through main() (so exit codes match the real binary)."""
    runner = CliRunner()
    result = runner.invoke(_Main(), list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


class _Main:
    """Adapter so CliRunner drives provisioner.cli.main (our exit-code mapping), not click's."""

    name = "provisioner"

    def main(self, args, prog_name=None, **_kwargs):
        raise SystemExit(main(list(args)))


def run_process(*args: str, cwd: Path = ROOT, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provisioner", *args], cwd=cwd, capture_output=True,
                          text=True, check=check)


__all__ = ["cli", "run_cli", "run_process"]
