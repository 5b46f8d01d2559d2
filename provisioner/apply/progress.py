"""Progress of an apply from ansible-runner events, and the summary table.

On a terminal (text format) a live rich display shows one bar per batch (hosts finished / hosts) and one per
host (tasks done, the current task, the last outcome). Elsewhere (CI logs, ``--format json``) it prints one
line per finished host to stderr, so stdout stays the report. rich is imported only for the live display.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ..report import text_table
from .rollout import Batch, BatchOutcome

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

# tasks per host of each play, for the per-host bars (a host that finishes early jumps to 100 %)
TASKS_PER_HOST = {"switches": 8, "etcd": 8, "canary": 9, "racks": 9}


class Progress:
    def __init__(self, live: bool, stream=None):
        self.stream = stream or sys.stderr
        self.live = live
        self._rich: RichProgress | None = None
        self._host_tasks: dict[str, TaskID] = {}
        self._batch_task: TaskID | None = None
        self._done: set[str] = set()
        self._counts: dict[str, int] = {}

    # -- batch lifecycle -----------------------------------------------------------------------------
    def start_batch(self, index: int, total: int, batch: Batch) -> None:
        self._done = set()
        self._counts = {h: 0 for h in batch.hosts}
        title = f"[{index + 1}/{total}] {batch.name}: {len(batch.hosts)} hosts"
        if not self.live:
            click.echo(title, file=self.stream)
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(file=self.stream), transient=False)
        self._rich = rich
        rich.start()
        self._batch_task = rich.add_task(f"[bold]{title}", total=len(batch.hosts))
        per_host = TASKS_PER_HOST.get(batch.kind, 8)
        self._host_tasks = {h: rich.add_task(f"  {h}", total=per_host) for h in batch.hosts}

    def end_batch(self, outcome: BatchOutcome) -> None:
        if self._rich is not None:
            for h, tid in self._host_tasks.items():
                stats = outcome.hosts.get(h, {})
                mark = "failed" if stats.get("failed") else "unreachable" if stats.get("unreachable") else "done"
                self._rich.update(tid, completed=self._rich.tasks[tid].total, description=f"  {h}  {mark}")
            if self._batch_task is not None:
                self._rich.update(self._batch_task, completed=len(self._host_tasks))
            self._rich.stop()
            self._rich = None
        else:
            for h, stats in outcome.hosts.items():
                if h not in self._done:
                    self._line(h, stats)
        click.echo(f"    {outcome.batch.name}: {outcome.status} in {outcome.seconds:.1f}s", file=self.stream)

    # -- events --------------------------------------------------------------------------------------
    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_stats":
            return
        if not host or host not in self._counts:
            return
        if kind == "runner_on_start":
            self._describe(host, data.get("task", ""))
            return
        if not kind.startswith("runner_on_"):
            return
        self._counts[host] += 1
        outcome = kind.removeprefix("runner_on_")
        if self._rich is not None:
            tid = self._host_tasks[host]
            self._rich.update(tid, advance=1, description=f"  {host}  {data.get('task', '')} ({outcome})")
        if outcome in ("failed", "unreachable") and not data.get("ignore_errors") and self._rich is None:
            click.echo(f"    {host}: {outcome} at {data.get('task', '')!r}", file=self.stream)

    def _describe(self, host: str, task: str) -> None:
        if self._rich is not None:
            self._rich.update(self._host_tasks[host], description=f"  {host}  {task}")

    def _line(self, host: str, stats: dict[str, int]) -> None:
        self._done.add(host)
        click.echo(f"    {host}: ok={stats.get('ok', 0)} changed={stats.get('changed', 0)} "
                   f"failed={stats.get('failed', 0)} unreachable={stats.get('unreachable', 0)}", file=self.stream)


def summary_rows(outcomes: list[BatchOutcome]) -> list[tuple[Any, ...]]:
    rows = []
    for o in outcomes:
        for h in o.batch.hosts:
            s = o.hosts.get(h, {})
            state = o.status if o.status == "skipped" else (
                "failed" if s.get("failed") else "unreachable" if s.get("unreachable") else
                "not run" if not any(s.values()) else "ok")
            rows.append((o.batch.name, h, s.get("ok", 0), s.get("changed", 0), s.get("failed", 0),
                         s.get("unreachable", 0), state))
    return rows


def summary_text(outcomes: list[BatchOutcome]) -> str:
    hosts = text_table(("batch", "host", "ok", "changed", "failed", "unreachable", "state"), summary_rows(outcomes))
    batches = text_table(("batch", "hosts", "changed", "status", "seconds"),
                         [(o.batch.name, len(o.batch.hosts), o.changed, o.status, f"{o.seconds:.1f}")
                          for o in outcomes])
    return hosts + "\n\n" + batches
