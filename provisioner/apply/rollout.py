"""Rollout order: changed switches first, then etcd, then the canary rack, then the other racks in batches.

Pure functions over the Plan and rendered trees (``batches``), and the bookkeeping of one rollout run
(``Sequencer``: which batch runs, what it did, whether the next may start).

Changed switches go in parallel within safe groups ("waves"): spines first, at most one spine of each DC per
wave (a DC never has all its spines reloading at once while it has two or more), then every changed ToR
together. A ToR is never in a batch with its rack's servers: switches always finish before any BIRD host starts.
"""

from __future__ import annotations

import math
import re
import time
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


def switch_waves(plan: Plan, names: Iterable[str]) -> list[Batch]:
    """Safe parallel groups of the given switches: spine waves (one spine per DC each), then the ToRs."""
    chosen = set(names)
    per_dc: dict[str, list[str]] = {}
    for s in plan.spines:
        if s.name in chosen:
            per_dc.setdefault(s.dc, []).append(s.name)
    depth = max((len(v) for v in per_dc.values()), default=0)
    waves = [tuple(v[k] for v in per_dc.values() if k < len(v)) for k in range(depth)]
    out = [Batch("spines" if depth == 1 else f"spines {k + 1}/{depth}", "switches", w) for k, w in enumerate(waves)]
    tors = tuple(t.name for t in plan.tors if t.name in chosen)
    if tors:
        out.append(Batch("tors", "switches", tors))
    return out


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

    out: list[Batch] = switch_waves(plan, keep(changed_switches(plan, tree, previous)))
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


# --- one rollout run ------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    batch: Batch
    status: str  # ok | failed | skipped (running while it runs)
    seconds: float = 0.0
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> ok/changed/failed/unreachable
    messages: dict[str, str] = field(default_factory=dict)  # host -> why it failed
    diffs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # host -> changed files (check mode)
    stats_seen: bool = False  # ansible's final per-host counts arrived
    passed: set[str] = field(default_factory=set)  # hosts that reached the end of their play

    @property
    def changed(self) -> int:
        return sum(s.get("changed", 0) for s in self.hosts.values())


PASSED_FACT = "provisioner_passed"  # set by the last task of every play (post_tasks), for every host that got there
_ZERO = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}


class Sequencer:
    """The batches of one rollout run, driven by its events: which batch runs, what each did, whether the next
    may start.

    ``begin(i)`` is called when batch ``i`` is about to start (its guard play): it closes the running batch and
    says whether ``i`` may run. A batch passes only when every host reached the end of its play (a positive
    signal: failed, unreachable and never-run hosts all fail it) and Ansible's final counts show no failure.
    The first batch that does not pass stops the rollout; the later ones stay ``skipped``.
    """

    def __init__(self, plan_batches: list[Batch], on_start: Callable[[int, Batch], None] | None = None,
                 on_end: Callable[[BatchOutcome], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.outcomes = [BatchOutcome(b, "skipped") for b in plan_batches]
        self.current: int | None = None
        self.stopped = False
        self._on_start, self._on_end, self._clock = on_start, on_end, clock
        self._started = 0.0
        self._host_batch = {h: i for i, b in enumerate(plan_batches) for h in b.hosts}

    def begin(self, i: int) -> bool:
        self.close()
        if self.stopped or i >= len(self.outcomes) or any(o.status != "ok" for o in self.outcomes[:i]):
            self.stopped = True
            return False
        self.current, self._started = i, self._clock()
        self.outcomes[i].status = "running"
        if self._on_start is not None:
            self._on_start(i, self.outcomes[i].batch)
        return True

    def close(self) -> None:
        """The running batch ended: its time and status (from what its hosts did so far)."""
        if self.current is None:
            return
        o = self.outcomes[self.current]
        o.seconds = round(self._clock() - self._started, 2)
        self.current = None
        self._settle(o)
        if self._on_end is not None:
            self._on_end(o)

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self.close()
            for o in self.outcomes:
                collect(o, event, hosts=set(o.batch.hosts))
                if o.status != "skipped":
                    self._settle(o)
            return
        if self.current is None or self._host_batch.get(data.get("host", "")) != self.current:
            return
        o = self.outcomes[self.current]
        if kind == "runner_on_ok" and ((data.get("res") or {}).get("ansible_facts") or {}).get(PASSED_FACT):
            o.passed.add(data["host"])
        collect(o, event)

    def finish(self, run_ok: bool, why: str) -> list[BatchOutcome]:
        """After the run: a run that failed without a failed batch fails the batch it was in (or about to start)."""
        self.close()
        if not run_ok and not any(o.status == "failed" for o in self.outcomes):
            pending = [o for o in self.outcomes if o.status != "ok"] or self.outcomes[-1:]
            if pending:
                pending[0].status = "failed"
                pending[0].messages.setdefault("(ansible)", why)
        return self.outcomes

    @staticmethod
    def _settle(o: BatchOutcome) -> None:
        for h in o.batch.hosts:
            o.hosts.setdefault(h, dict(_ZERO))
        bad = {h for h, s in o.hosts.items() if s["failed"] or s["unreachable"]}
        if o.stats_seen:
            for h in [h for h in o.messages if h in o.hosts and h not in bad and h in o.passed]:
                del o.messages[h]  # a failure that a rescue handled
        for h in o.batch.hosts:
            if h not in o.passed and h not in bad and not any(o.hosts[h].values()):
                o.messages.setdefault(h, "not run (the batch stopped before this host)")
        o.status = "ok" if set(o.batch.hosts) <= o.passed and not bad else "failed"


def collect(outcome: BatchOutcome, event: dict[str, Any], hosts: set[str] | None = None) -> None:
    """Per-host counters, failure messages and (check mode) diffs from one ansible-runner event."""
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind == "playbook_on_stats":
        _collect_stats(outcome, data, hosts)
        return
    host = data.get("host")
    if not host or not kind.startswith("runner_on_") or kind in ("runner_on_start",):
        return
    if kind == "runner_on_file_diff":
        # a task with no_log (files holding secrets) whose content would change: ansible-runner censors the
        # diff; say that the file changes, never how
        if not data.get("diff") and not outcome.stats_seen:
            hidden = {"task": data.get("task", ""), "path": None, "hidden": True}
            if hidden not in outcome.diffs.get(host, []):
                outcome.diffs.setdefault(host, []).append(hidden)
        return
    stats = outcome.hosts.setdefault(host, dict(_ZERO))
    res = data.get("res") or {}
    if outcome.stats_seen:
        return
    if kind == "runner_on_ok":
        stats["ok"] += 1
        if res.get("changed"):
            stats["changed"] += 1
            _collect_diffs(outcome, host, res, data)
    elif kind == "runner_on_failed" and not data.get("ignore_errors"):
        stats["failed"] += 1
        outcome.messages[host] = _message(res, data)
    elif kind == "runner_on_unreachable":
        stats["unreachable"] += 1
        outcome.messages[host] = "unreachable: " + _message(res, data)
    elif kind == "runner_on_skipped":
        stats["skipped"] += 1


def _collect_stats(outcome: BatchOutcome, data: dict[str, Any], hosts: set[str] | None) -> None:
    """The final per-host counts (rescued failures are not failures) replace what the events added up."""
    listed = {h for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed")
              for h in (data.get(key) or {})}
    for h in listed:  # a host absent from one count is 0 there
        if hosts is None or h in hosts:
            outcome.hosts[h] = dict(_ZERO)
    for key, name in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                      ("skipped", "skipped")):
        for h, n in (data.get(key) or {}).items():
            if hosts is not None and h not in hosts:
                continue
            outcome.hosts.setdefault(h, dict(_ZERO))
            outcome.hosts[h][name] = n
    outcome.stats_seen = True


def _collect_diffs(outcome: BatchOutcome, host: str, res: dict[str, Any], data: dict[str, Any]) -> None:
    """The diffs of a changed task (check mode); a censored one (no_log) only says that something changes."""
    diff = res.get("diff")
    if diff:
        for d in diff if isinstance(diff, list) else [diff]:
            if isinstance(d, dict) and (d.get("before") != d.get("after") or d.get("prepared")):
                outcome.diffs.setdefault(host, []).append({
                    "task": data.get("task", ""), "path": d.get("after_header") or d.get("before_header"),
                    "before": d.get("before", ""), "after": d.get("after", ""),
                })
    elif "censored" in res:
        outcome.diffs.setdefault(host, []).append({"task": data.get("task", ""), "path": None, "hidden": True})


def _message(res: dict[str, Any], data: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("stdout") or "failed"
    if "censored" in res:
        msg = "output hidden (no_log)"
    return f"{data.get('task', '')}: {str(msg).strip()[:500]}"
