"""Changes a reviewer meets in pull requests of the example site, for the `plan --against` tests.

Each is an edit of site.yaml as an SRE would make it; ``prepare`` copies the example, applies the edit and
renders (so the lock file is updated, as it is in the pull request).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EXAMPLE
from tests.helpers import add_dc2_rack, run_cli


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


SCENARIOS: dict[str, Callable[[str], str]] = {
    # BGP timers: every session of the site, no object added or removed.
    "timers": _replace("bgp:\n  password: BGP_FABRIC_PASSWORD",
                       "bgp:\n  password: BGP_FABRIC_PASSWORD\n  hold_time: 6\n  keepalive: 2"),
    # Anycast renumbering: every node's announcements, every ToR's prefix-lists.
    "anycast": _replace("anycast: [10.200.1.0/24]", "anycast: [10.200.9.0/24]"),
    # A new rack of 20 nodes in dc2.
    "rack": add_dc2_rack,
    # The dc1 control-plane VM moves to another rack (new address there).
    "cp-move": _replace("{name: cp1, dc: dc1, rack: dc1-r01, address: 10.1.1.201",
                        "{name: cp1, dc: dc1, rack: dc1-r03, address: 10.1.3.210"),
}


def prepare(tmp: Path, name: str) -> Path:
    site = tmp / name / "inventories" / "example"
    shutil.copytree(EXAMPLE, site)
    path = site / "site.yaml"
    path.write_text(SCENARIOS[name](path.read_text()))
    code, out, err = run_cli("render", str(site), "--out", str(tmp / name / "rendered"))
    assert code == 0, err + out
    return site
