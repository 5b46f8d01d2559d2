"""Where a lab keeps its files, and state.json: what `lab up` made, so every other command (and a crashed
run's `lab down`) knows it.

State directory: ``.lab/<site>/`` at the project root for the default prefix ``plab``; ``.lab/<site>-<prefix>/``
for any other prefix (``PROVISIONER_LAB_PREFIX``), so two labs of one site can coexist.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..paths import lab_root
from .netns import LabError
from .topology import DEFAULT_PREFIX, lab_prefix


def site_name(site: str | Path) -> str:
    """The site's name from a site directory, a site.yaml, or the name itself (``lab``)."""
    path = Path(site)
    if path.is_dir():
        path = path / "site.yaml"
    if path.is_file():
        try:
            name = (yaml.safe_load(path.read_text()) or {}).get("site")
        except yaml.YAMLError:
            name = None
        return str(name or path.parent.name)
    return path.name


def state_dir(site: str | Path, prefix: str | None = None) -> Path:
    prefix = lab_prefix(prefix)
    name = site_name(site)
    suffix = "" if prefix == DEFAULT_PREFIX else f"-{prefix}"
    return lab_root(site) / f"{name}{suffix}"


def host_dir(site: str | Path, host: str, prefix: str | None = None) -> Path:
    return state_dir(site, prefix) / "hosts" / host


def state_file(site: str | Path, prefix: str | None = None) -> Path:
    return state_dir(site, prefix) / "state.json"


def load(site: str | Path, prefix: str | None = None, *, required: bool = True) -> dict[str, Any]:
    path = state_file(site, prefix)
    if not path.exists():
        if required:
            raise LabError(f"no lab of site {site_name(site)} is up (no {path}); run `provisioner lab up` first")
        return {}
    return json.loads(path.read_text())


def save(state: dict[str, Any]) -> None:
    path = Path(state["state_dir"]) / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.")
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def option(state: dict[str, Any], key: str, default: str = "all") -> str:
    """A `lab up` option recorded in the state (``health``, ``ssh``, ``pods``); labs from before it: ``all``."""
    return str(state.get("options", {}).get(key, default))
