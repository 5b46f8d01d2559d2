"""validate, render and plan never import the apply stack (ansible_runner, paramiko).

Each command runs in a fresh interpreter; afterwards no module of those packages may be loaded. This is
what keeps the render path fast at startup and usable without an SSH stack; it is a behaviour test,
not a timing test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("ansible_runner", "paramiko")

SCRIPT = """
import json, sys
from provisioner.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
print(json.dumps({{"rc": rc, "loaded": loaded}}))
"""


@pytest.mark.parametrize("command", ["validate", "render", "plan"])
def test_render_path_does_not_import_apply_stack(command: str, site_copy, tmp_path: Path):
    site = site_copy("example")
    out = tmp_path / "rendered"
    args = [command, str(site)] if command == "validate" else [command, str(site), "--out", str(out)]
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(forbidden=set(FORBIDDEN)), *args],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, proc.stdout + proc.stderr
    assert result["loaded"] == [], f"`provisioner {command}` imported {result['loaded']}"
