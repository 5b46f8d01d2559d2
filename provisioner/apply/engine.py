"""One apply, start to end: run directory, batches, pre-flight, confirmation, batches through the gates.

Used by ``provisioner apply`` and ``provisioner rollback`` (and by the lab tests through the Python API).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem
from ..plan import Plan
from . import preflight as pf
from .rollout import Batch, BatchOutcome, batches
from .runner import Options, create_run, last_successful, run_lock, run_rollout, secret_refs


@dataclass
class Request:
    plan: Plan
    tree: dict[str, str]
    runs_root: Path  # runs/<site>
    mode: str = "apply"  # apply | rollback
    source: dict[str, Any] = field(default_factory=dict)
    inventories: list[Path] = field(default_factory=list)  # overlays, after the rendered inventory
    check: bool = False
    canary: str | None = None
    batch: str = "rack"
    limit: str | None = None
    accept_new_host_keys: bool = False
    secrets_file: Path | None = None
    vault_password_file: Path | None = None
    pki_dir: Path | None = None
    gate_timeout: int = 60
    confirm: Callable[[list[Batch]], bool] | None = None  # None: do not ask
    on_batch_start: Callable[[int, Batch], None] | None = None
    progress: Any = None  # a progress.Progress


def resolve_limit(inventories: list[Path], pattern: str) -> list[str]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    inv = InventoryManager(loader=DataLoader(), sources=[str(p) for p in inventories])
    hosts = [h.name for h in inv.get_hosts(pattern)]
    if not hosts:
        raise InputError(f"--limit {pattern!r} matches no host of the inventory")
    return hosts


def required_files(plan: Plan, hosts: set[str]) -> dict[str, list[str]]:
    """host -> the files of the tree its role pushes."""
    out: dict[str, list[str]] = {}
    for n in plan.nodes:
        out[n.hostname] = [f"nodes/{n.hostname}/bird.conf", f"nodes/{n.hostname}/cni.conflist"]
    for v in plan.control_plane:
        out[v.name] = [f"control-plane/{v.name}/bird.conf"]
    for c in plan.etcd_clusters:
        for m in c.members:
            out[m.name] = [f"{c.name}/{m.name}/etcd.conf.yml"]
    for t in plan.tors:
        out[t.name] = [f"tors/{t.name}/frr.conf"]
    for s in plan.spines:
        out[s.name] = [f"spines/{s.name}/frr.conf"]
    return {h: f for h, f in out.items() if h in hosts}


def check_inputs(req: Request, hosts: set[str]) -> None:
    problems = []
    if "ansible/hosts.yml" not in req.tree:
        problems.append("the tree has no ansible/hosts.yml")
    for host, files in required_files(req.plan, hosts).items():
        problems += [f"{host}: the tree has no {f}" for f in files if f not in req.tree]
    etcd = {m.name: c.name for c in req.plan.etcd_clusters for m in c.members if m.name in hosts}
    if etcd:
        if req.pki_dir is None or not req.pki_dir.is_dir():
            problems.append(f"etcd PKI directory {req.pki_dir} is missing: run `provisioner pki SITE` "
                            "(or pass --pki DIR, or --limit the etcd VMs out)")
        else:
            for member, cluster in etcd.items():
                for f in ("ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"):
                    if not (req.pki_dir / cluster / member / f).is_file():
                        problems.append(f"{member}: {req.pki_dir / cluster / member / f} is missing")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise InputError([Problem(file="", line=None, field="", message=m) for m in shown])


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def execute(req: Request) -> tuple[int, dict[str, Any]]:
    """Run one apply; returns (exit code, report)."""
    with run_lock(req.runs_root):
        previous = last_successful(req.runs_root)
        meta: dict[str, Any] = {
            "site": req.plan.name, "mode": req.mode, "check": req.check, "source": req.source,
            "status": "planned", "started": _now(), "limit": req.limit, "canary": req.canary, "batch": req.batch,
            "previous_run": previous.run_id if previous else None,
        }
        run = create_run(req.runs_root, req.tree, meta)
        inventories = [(run.tree_dir / "ansible" / "hosts.yml").resolve(), *(p.resolve() for p in req.inventories)]
        timings: dict[str, float] = {}  # seconds per phase: preflight, ansible (the one rollout run)
        report: dict[str, Any] = {"timings": timings, "run_id": run.run_id, "run_dir": str(run.path),
                                  "site": req.plan.name, "mode": req.mode, "check": req.check,
                                  "previous_run": meta["previous_run"]}

        def finish(status: str, code: int, **extra: Any) -> tuple[int, dict[str, Any]]:
            meta.update(status=status, finished=_now(), **extra)
            run.save(meta)
            report.update(status=status, **extra)
            return code, report

        try:
            selected = resolve_limit(inventories, req.limit) if req.limit else None
            plan_batches = batches(req.plan, req.tree, previous.tree() if previous else None, canary=req.canary,
                                   batch=req.batch, selected=selected)
            hosts = [h for b in plan_batches for h in b.hosts]
            check_inputs(req, set(hosts))
        except InputError as exc:
            finish("bad input", 2, error=str(exc))
            raise
        report["batches"] = [{"name": b.name, "kind": b.kind, "hosts": list(b.hosts), "racks": list(b.racks)}
                             for b in plan_batches]
        if not plan_batches:
            return finish("ok", 0, hosts={}, changed=0, preflight={"hosts": 0, "mismatches": []})

        # pre-flight: every targeted host, in parallel, before anything changes
        t0 = time.monotonic()
        results = pf.run(pf.targets(inventories, hosts, req.plan), accept_new=req.accept_new_host_keys)
        mismatches = [{"host": h, "check": c, "expected": e, "actual": a} for h, c, e, a in pf.mismatch_rows(results)]
        preflight = {"hosts": len(results), "mismatches": mismatches}
        timings["preflight"] = round(time.monotonic() - t0, 2)
        if mismatches:
            return finish("refused", 1, preflight=preflight, hosts={}, changed=0, timings=timings)
        report["preflight"] = preflight

        if req.confirm is not None and not req.confirm(plan_batches):
            return finish("aborted", 1, preflight=preflight, hosts={}, changed=0)

        meta["status"] = "running"
        run.save(meta)
        opts = Options(
            inventories=inventories, check=req.check, secrets_file=req.secrets_file,
            vault_password_file=req.vault_password_file,
            extravars={"rendered_dir": str(run.tree_dir.resolve()),
                       "pki_dir": str(req.pki_dir.resolve()) if req.pki_dir else "",
                       "gate_timeout": req.gate_timeout},
        )
        t0 = time.monotonic()
        outcomes = run_rollout(run, plan_batches, opts, secret_refs(req.tree), progress=req.progress,
                               on_batch_start=req.on_batch_start)
        timings["ansible"] = round(time.monotonic() - t0, 2)
        failed = any(o.status == "failed" for o in outcomes)
        host_stats = {h: o.hosts.get(h, {}) | {"batch": o.batch.name, "state": _state(o, h)}
                      for o in outcomes for h in o.batch.hosts}
        report["outcomes"] = outcomes
        return finish(
            "failed" if failed else "ok", 1 if failed else 0,
            preflight=preflight, hosts=host_stats, changed=sum(o.changed for o in outcomes), timings=timings,
            batches=[{"name": o.batch.name, "kind": o.batch.kind, "hosts": list(o.batch.hosts),
                      "racks": list(o.batch.racks), "status": o.status, "seconds": o.seconds,
                      "changed": o.changed} for o in outcomes],
            messages={h: m for o in outcomes for h, m in o.messages.items()},
            diffs={h: d for o in outcomes for h, d in o.diffs.items()},
        )


def _state(o: BatchOutcome, host: str) -> str:
    if o.status == "skipped":
        return "skipped"
    s = o.hosts.get(host, {})
    if s.get("failed"):
        return "failed"
    if s.get("unreachable"):
        return "unreachable"
    return "ok" if any(s.values()) else "not run"
