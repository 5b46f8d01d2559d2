"""lab.netns.run: the timeout path that `lab verify` reaches returns exit 124, never a TypeError."""

from __future__ import annotations

import pytest

from provisioner.lab.netns import LabError, run

SLOW = ["sh", "-c", "echo partial-out; echo partial-err >&2; exec sleep 30"]


def test_timeout_without_check_returns_124_with_the_output_so_far_as_text():
    # subprocess.TimeoutExpired carries bytes even with text=True; before the fix this raised TypeError.
    proc = run(SLOW, check=False, timeout=1.0)
    assert proc.returncode == 124
    assert isinstance(proc.stdout, str) and isinstance(proc.stderr, str)
    assert "partial-out" in proc.stdout
    assert proc.stderr.startswith("partial-err") and proc.stderr.endswith("timeout")


def test_timeout_with_check_is_a_lab_error():
    with pytest.raises(LabError, match=r"timed out after 0\.5s"):
        run(["sleep", "30"], timeout=0.5)


def test_failure_with_check_names_the_command_and_its_stderr():
    with pytest.raises(LabError, match=r"failed \(3\): sh -c .*\n.*boom"):
        run(["sh", "-c", "echo boom >&2; exit 3"])
    assert run(["sh", "-c", "exit 3"], check=False).returncode == 3
