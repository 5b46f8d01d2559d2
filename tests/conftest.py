"""Shared test plumbing.

Tiers: tests/unit and tests/golden need nothing; tests/daemons need bird, vtysh and etcd; tests/lab
needs root and iproute2. Locally a missing prerequisite skips; in CI (CI=true, or
PROVISIONER_REQUIRE_ALL_TIERS=1) it fails, and so does any skipped daemons or lab test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INVENTORIES = ROOT / "inventories"
EXAMPLE = INVENTORIES / "example"
LAB = INVENTORIES / "lab"
STRICT_TIERS = ("daemons", "lab")
REQUIRED = os.environ.get("CI", "").lower() == "true" or os.environ.get("PROVISIONER_REQUIRE_ALL_TIERS") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI: a tier CI must run can never silently vanish."""
    if not condition:
        (pytest.fail if REQUIRED else pytest.skip)(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    require(path is not None, f"{name} is not installed (scripts/test installs it as root)")
    return str(path)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in STRICT_TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not REQUIRED:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", [])
               if any(f"tests/{tier}/" in r.nodeid for tier in STRICT_TIERS)]
    if skipped:
        reporter.write_line(f"FAIL: {len(skipped)} daemons/lab tests were skipped; CI requires every tier:")
        for r in skipped:
            reporter.write_line(f"  {r.nodeid}")
        session.exitstatus = 1


@pytest.fixture
def site_copy(tmp_path: Path):
    """Copy an inventory into tmp_path and return the site directory (tests never touch the repo's)."""

    def make(name: str = "example") -> Path:
        dest = tmp_path / "inventories" / name
        shutil.copytree(INVENTORIES / name, dest)
        return dest

    return make
