"""Where things are: the data shipped in the package, and a site's project root.

Shipped data (templates, playbooks, ansible.cfg) is found through ``importlib.resources``, so a wheel
install finds the copy inside the package and a checkout or an editable install finds the top-level
directories of the repository (``provisioner/templates`` etc. are symlinks to them).

A site's *project root* holds what the tool writes for it: ``rendered/<site>/``, ``secrets/<site>/``,
``runs/<site>/`` and ``.lab/<site>/``. A site in ``<root>/inventories/<site>/`` has ``<root>`` as its
project root; any other site directory (or a site named rather than given as a path) uses the current
working directory. Nothing is resolved relative to where the package happens to be installed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _shipped(name: str) -> Path:
    resource = files(__package__ or "provisioner") / name
    if not isinstance(resource, Path):  # e.g. a zipped install: ansible and jinja need real files
        raise RuntimeError(f"provisioner's {name} is not on the file system ({resource}); install it unzipped")
    return resource.resolve()


def templates_dir() -> Path:
    """``templates/<scope>/*.j2``, read by render."""
    return _shipped("templates")


def playbooks_dir() -> Path:
    """The Ansible project directory apply runs (``site.yml`` and its roles)."""
    return _shipped("playbooks")


def ansible_cfg() -> Path:
    """provisioner's Ansible settings (``ANSIBLE_CONFIG`` of every run)."""
    return _shipped("ansible.cfg")


def site_directory(site: str | Path) -> Path | None:
    """The directory of a site given as a directory or its ``site.yaml``; None for a bare name."""
    path = Path(site)
    if path.is_file():
        return path.parent.resolve()
    if path.is_dir():
        return path.resolve()
    return None


def project_root(site: str | Path) -> Path:
    """``<root>`` for a site in ``<root>/inventories/<site>/``; otherwise the working directory."""
    directory = site_directory(site)
    if directory is not None and directory.parent.name == "inventories":
        return directory.parent.parent
    return Path.cwd()


def rendered_dir(site: str | Path) -> Path:
    """Default render target: ``rendered/<site directory name>/`` of the project."""
    return project_root(site) / "rendered" / _dir_name(site)


def secrets_dir(site: str | Path) -> Path:
    """Default PKI directory: ``secrets/<site directory name>/`` of the project (git-ignored)."""
    return project_root(site) / "secrets" / _dir_name(site)


def runs_root(site: str | Path) -> Path:
    """``runs/`` of the project; apply adds ``<site>/<run_id>/``."""
    return project_root(site) / "runs"


def lab_root(site: str | Path) -> Path:
    """``.lab/`` of the project; the lab adds ``<site>[-<prefix>]/``."""
    return project_root(site) / ".lab"


def _dir_name(site: str | Path) -> str:
    directory = site_directory(site)
    return directory.name if directory is not None else Path(site).name
