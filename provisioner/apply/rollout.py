"""Rollout order: changed switches first, then etcd, then the canary rack, then the other racks in batches.

Pure functions over the Plan and rendered trees (``batches``) and the driver of one apply (``execute``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InputError
from ..plan import Plan

BatchKind = Literal["switches", "etcd", "canary", "racks"]
_PERCENT = re.compile(r"^([1-9][0-9]?|100)%$")


@dataclass(frozen=True, slots=True)
class Batch:
    name: str
    kind: BatchKind
    hosts: tuple[str, ...]
    racks: tuple[str, ...] = ()


def switch_files(plan: Plan) -> dict[str, str]:
    """switch name -> its file in the rendered tree."""
    out = {t.name: f"tors/{t.name}/frr.conf" for t in plan.tors}
    out.update({s.name: f"spines/{s.name}/frr.conf" for s in plan.spines})
    return out


def changed_switches(plan: Plan, tree: dict[str, str], previous: dict[str, str] | None) -> list[str]:
    """Switches whose FRR config differs from what the last successful run pushed (all, without one)."""
    files = switch_files(plan)
    if previous is None:
        return list(files)
    return [name for name, path in files.items() if tree.get(path) != previous.get(path)]


def parse_batch(spec: str) -> int | None:
    """``rack`` -> None (one rack per batch); ``N%`` -> N (that share of the remaining racks per batch)."""
    if spec == "rack":
        return None
    m = _PERCENT.fullmatch(spec)
    if not m:
        raise InputError(f"--batch: {spec!r} is neither 'rack' nor a percentage like '25%'")
    return int(m.group(1))


def rack_order(plan: Plan) -> list[str]:
    return [t.rack for t in plan.tors]


def rack_hosts(plan: Plan) -> dict[str, list[str]]:
    """rack -> its BIRD hosts (nodes, then control-plane VMs), in site order."""
    out: dict[str, list[str]] = {r: [] for r in rack_order(plan)}
    for n in plan.nodes:
        out[n.rack].append(n.hostname)
    for v in plan.control_plane:
        out[v.rack].append(v.name)
    return out


def batches(plan: Plan, tree: dict[str, str], previous: dict[str, str] | None, *, canary: str | None = None,
            batch: str = "rack", selected: Iterable[str] | None = None) -> list[Batch]:
    """The rollout: changed switches; etcd members; the canary rack; the other racks, N at a time.

    ``selected`` (from --limit) restricts every batch to those hosts; empty batches are dropped. The canary
    defaults to the first rack in site order that has a selected host.
    """
    percent = parse_batch(batch)
    chosen = None if selected is None else set(selected)

    def keep(hosts: Iterable[str]) -> tuple[str, ...]:
        return tuple(h for h in hosts if chosen is None or h in chosen)

    out: list[Batch] = []
    switches = keep(changed_switches(plan, tree, previous))
    if switches:
        out.append(Batch("switches", "switches", switches))
    etcd = keep(m.name for c in plan.etcd_clusters for m in c.members)
    if etcd:
        out.append(Batch("etcd", "etcd", etcd))

    by_rack = {r: keep(h) for r, h in rack_hosts(plan).items()}
    order = rack_order(plan)
    if canary is not None and canary not in by_rack:
        raise InputError(f"--canary: no rack named {canary!r} (racks: {', '.join(order)})")
    racks = [r for r in order if by_rack[r]]
    if canary is None:
        canary = racks[0] if racks else None
    elif not by_rack[canary]:
        raise InputError(f"--canary: rack {canary!r} has no host selected by --limit")
    if canary is None:
        return out
    out.append(Batch(f"canary {canary}", "canary", by_rack[canary], (canary,)))
    rest = [r for r in racks if r != canary]
    size = 1 if percent is None else max(1, math.ceil(len(rest) * percent / 100))
    for i in range(0, len(rest), size):
        group = rest[i:i + size]
        name = f"rack {group[0]}" if len(group) == 1 else f"racks {group[0]}..{group[-1]}"
        out.append(Batch(name, "racks", tuple(h for r in group for h in by_rack[r]), tuple(group)))
    return out


# --- the driver -------------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    batch: Batch
    status: str  # ok | failed | skipped
    seconds: float = 0.0
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> ok/changed/failed/unreachable
    messages: dict[str, str] = field(default_factory=dict)  # host -> why it failed
    diffs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # host -> changed files (check mode)
    stats_seen: bool = False  # ansible's final per-host counts arrived

    @property
    def changed(self) -> int:
        return sum(s.get("changed", 0) for s in self.hosts.values())


def run_batches(plan_batches: list[Batch], run_one: Callable[[int, Batch], BatchOutcome],
                on_start: Callable[[int, Batch], None] | None = None) -> list[BatchOutcome]:
    """Run the batches in order and stop at the first that fails; the rest are reported as skipped."""
    outcomes: list[BatchOutcome] = []
    failed = False
    for i, b in enumerate(plan_batches):
        if failed:
            outcomes.append(BatchOutcome(b, "skipped"))
            continue
        if on_start is not None:
            on_start(i, b)
        outcome = run_one(i, b)
        outcomes.append(outcome)
        failed = outcome.status != "ok"
    return outcomes
