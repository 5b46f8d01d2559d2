"""load -> allocate -> plan, the chain every command starts with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .ipam import Allocations, allocate, read_lock
from .load import SiteSource, load_site
from .plan import Plan, build_plan


@dataclass(frozen=True)
class Compiled:
    plan: Plan
    source: SiteSource
    previous_lock: Allocations


def compile_site(path: str | Path) -> Compiled:
    """Everything derived from a site directory, in memory. Writes nothing."""
    site, source, _doc = load_site(path)
    lock = read_lock(source)
    allocations, change = allocate(site, lock, str(source.lock_file))
    return Compiled(plan=build_plan(site, allocations, change), source=source, previous_lock=lock)
