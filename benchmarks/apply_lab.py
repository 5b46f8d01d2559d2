"""Apply timings on the network-namespace lab (root): whole ``provisioner apply`` processes against a --bare lab.

    sudo PROVISIONER_LAB_PREFIX=pbench .venv/bin/python benchmarks/apply_lab.py [--site inventories/lab] [--runs N]

Brings up ``lab up --bare`` of the site (its own lab prefix), issues the lab's etcd PKI, then times, as whole
processes (interpreter start, render, pre-flight, Ansible, gates):

  first       the first apply: every switch, both etcd clusters bootstrapped, every BIRD host started
  noop        an apply with nothing to change, default order (etcd, canary, one rack per batch)
  noop-100%   the same with ``--batch 100%`` (etcd, canary, the rest)
  check       ``--check`` of that change (Ansible check mode: diffs, nothing written)
  one-switch  one ToR's frr.conf changed (a comment), so only that switch and the gates run
  back        the first run's tree again (that ToR back)

For each: the wall time, pre-flight seconds and each batch's seconds (from the run report). Prints a markdown
table and writes ``benchmarks/results/apply-<site>.json``. Not a test: nothing is asserted. Takes the lab down
at the end, also on failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioner.lab.teardown import down  # noqa: E402
from provisioner.lab.topology import lab_prefix  # noqa: E402
from provisioner.lab.up import up  # noqa: E402
from provisioner.pipeline import compile_site  # noqa: E402


def provisioner_bin() -> str:
    local = Path(sys.executable).parent / "provisioner"
    return str(local) if local.exists() else "provisioner"


def apply(site: Path, overlay: Path, runs: Path, pki: Path, *args: str) -> dict[str, Any]:
    argv = [provisioner_bin(), "apply", str(site), "--yes", "--format", "json", "-i", str(overlay),
            "--runs-dir", str(runs), "--pki", str(pki), *args]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {}
    if proc.returncode != 0:
        raise SystemExit(f"apply {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    return {"wall": round(wall, 1), "run_id": report.get("run_id"), "changed": report.get("changed"),
            "diffs": sorted(report.get("diffs") or {}),
            "timings": report.get("timings", {}),
            "batches": [{"name": b["name"], "hosts": len(b["hosts"]), "seconds": b.get("seconds")}
                        for b in report.get("batches", [])]}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", type=Path, default=ROOT / "inventories" / "lab")
    ap.add_argument("--runs", type=int, default=1, help="repeat the no-op applies N times")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    ap.add_argument("--first-only", action="store_true", help="only the first apply (a large site's figures)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("apply_lab: needs root (network namespaces)")
    prefix = lab_prefix()
    from provisioner import pki

    work = Path(tempfile.mkdtemp(prefix="apply-bench-"))
    site = work / "inventories" / args.site.name
    shutil.copytree(args.site, site, ignore=shutil.ignore_patterns(".provisioner.lock"))
    plan = compile_site(site).plan
    results: dict[str, Any] = {
        "site": plan.name, "prefix": prefix, "cpus": os.cpu_count(), "python": platform.python_version(),
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "load_start": loadavg(),
        "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, check=False).stdout.strip(),
        "hosts": len(plan.nodes) + len(plan.control_plane) + len(plan.tors) + len(plan.spines)
        + sum(len(c.members) for c in plan.etcd_clusters),
        "runs": {},
    }
    down(args.site, prefix=prefix)
    try:
        t0 = time.monotonic()
        state = up(args.site, bare=True, prefix=prefix)
        results["lab_up_bare"] = round(time.monotonic() - t0, 1)
        pki_dir = Path(state["pki"])
        files, _ = pki.issue(plan, pki_dir, rotate=pki_dir.exists() and any(pki_dir.iterdir()))
        pki.write(pki_dir, files)
        overlay = Path(state["state_dir"]) / "inventory.yml"
        runs = work / "runs"
        run = results["runs"]  # filled as it goes: a failed run still reports the ones before it
        run["first"] = apply(site, overlay, runs, pki_dir)
        print(f"first apply: {run['first']['wall']}s", flush=True)
        good_tree = runs / plan.name / run["first"]["run_id"] / "tree"
        for i in range(0 if args.first_only else args.runs):
            suffix = "" if args.runs == 1 else f" #{i + 1}"
            run[f"noop{suffix}"] = apply(site, overlay, runs, pki_dir, "--tree", str(good_tree))
            run[f"noop-100%{suffix}"] = apply(site, overlay, runs, pki_dir, "--tree", str(good_tree), "--batch", "100%")
            print(f"no-op: {run[f'noop{suffix}']['wall']}s, --batch 100%: {run[f'noop-100%{suffix}']['wall']}s",
                  flush=True)
        if args.first_only:
            raise SystemExit(0)
        tor = plan.tors[0].name
        changed = work / "one-switch"
        shutil.copytree(good_tree, changed)
        conf = changed / "tors" / tor / "frr.conf"
        conf.write_text(conf.read_text() + "! benchmark: one changed line\n")
        run["check"] = apply(site, overlay, runs, pki_dir, "--tree", str(changed), "--check")
        if run["check"]["diffs"] != [tor]:
            raise SystemExit(f"check mode showed diffs for {run['check']['diffs']}, expected [{tor}]")
        run["one-switch"] = apply(site, overlay, runs, pki_dir, "--tree", str(changed))
        run["back"] = apply(site, overlay, runs, pki_dir, "--tree", str(good_tree))
    except SystemExit as exc:  # a failed apply, or the end of --first-only (code 0)
        if exc.code not in (0, None):
            results["failed"] = str(exc)[:3000]
    finally:
        results["load_end"] = loadavg()
        if not args.keep:
            down(args.site, prefix=prefix)
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "benchmarks" / "results" / f"apply-{plan.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(table(results))
    if "failed" in results:
        raise SystemExit(results["failed"])


def table(results: dict[str, Any]) -> str:
    lines = [f"apply on the {results['site']} lab ({results['hosts']} hosts), {results['started']}, commit "
             f"{results['commit']}, {results['cpus']} CPUs, load {results['load_start']} -> {results['load_end']}",
             "", "| run | wall | pre-flight | batches (seconds) |", "|---|---:|---:|---|"]
    for name, r in results["runs"].items():
        pre = r["timings"].get("preflight")
        batches = ", ".join(f"{b['name']} ({b['hosts']}) {b['seconds']}" for b in r["batches"])
        lines.append(f"| {name} | {r['wall']} s | {'' if pre is None else f'{pre} s'} | {batches} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
