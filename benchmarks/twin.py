"""The scale twin on the lab (root): time to up, converge and verify, memory per daemon, DC loss and restore.

    sudo .venv/bin/python benchmarks/twin.py [--nodes-per-rack N] [--site DIR] [--health MODE] [--ssh MODE]

The full twin (800+ hosts) needs the default lab prefix: another prefix gets a /24 management network (253 hosts).

Writes the twin of the site (default inventories/example; ``provisioner lab twin``) into
``benchmarks/.work/twin[-N]/inventories/<site>-twin`` (git-ignored), then measures:

  up          ``lab up --pods sample --health sample --ssh sample`` (the defaults here; docs/lab.md): namespaces,
              links, anchors, sshd, every daemon, the pods (wall seconds)
  converge    from the end of up until ``lab verify`` first passes (verify polls every 3 s)
  verify      one more ``lab verify`` on the converged lab (its own duration)
  memory      RSS and PSS of every process in the lab's namespaces, by process name, and MemAvailable before/after
  cpu         cores used by the idle, converged lab over 10 s, by process name (children included)
  dc loss     ``lab fail dc dc2`` -> every drill row as expected (settled): seconds from the fail command
  restore     ``lab restore`` -> ``lab verify`` passes: seconds

Prints each figure as it is measured and a markdown table at the end; ``benchmarks/results/twin[-N].json`` is
rewritten after every figure, so an interrupted run keeps what it measured. Not a test: nothing is asserted. The lab
is always taken down at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioner.lab.drill import drill  # noqa: E402
from provisioner.lab.netns import comm as netns_comm  # noqa: E402
from provisioner.lab.netns import netns_list, pids_by_netns  # noqa: E402
from provisioner.lab.teardown import down  # noqa: E402
from provisioner.lab.topology import lab_prefix  # noqa: E402
from provisioner.lab.twin import differences, write_twin  # noqa: E402
from provisioner.lab.up import up  # noqa: E402
from provisioner.lab.verify import verify  # noqa: E402


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_available_mib() -> float:
    return _kib("/proc/meminfo", "MemAvailable:") / 1024


def lab_pids(prefix: str) -> list[int]:
    found = pids_by_netns(ns for ns in netns_list() if ns.startswith(f"{prefix}-"))
    return sorted(p for pids in found.values() for p in pids)


def comm(pid: int) -> str:
    return netns_comm(pid) or "?"


def memory(prefix: str) -> dict[str, Any]:
    """RSS and PSS (MiB) of the lab's processes, by process name."""
    rss: Counter[str] = Counter()
    pss: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for pid in lab_pids(prefix):
        name = comm(pid)
        rss[name] += _kib(f"/proc/{pid}/status", "VmRSS:")
        pss[name] += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
        count[name] += 1
    rows = {n: {"processes": count[n], "rss_mib": round(rss[n] / 1024, 1), "pss_mib": round(pss[n] / 1024, 1),
                "rss_each_mib": round(rss[n] / 1024 / count[n], 1)} for n in sorted(rss, key=lambda n: -rss[n])}
    return {"by_process": rows, "rss_mib": round(sum(rss.values()) / 1024), "pss_mib": round(sum(pss.values()) / 1024),
            "processes": sum(count.values())}


def cpu(prefix: str, seconds: float = 10.0) -> dict[str, float]:
    """Cores used by the lab's processes (their reaped children included: the health checks' curl)."""
    hz = os.sysconf("SC_CLK_TCK")

    def snap() -> Counter[str]:
        c: Counter[str] = Counter()
        for pid in lab_pids(prefix):
            try:
                text = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            f = text[text.rindex(")") + 2:].split()
            c[comm(pid)] += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        return c

    a = snap()
    t0 = time.monotonic()
    time.sleep(seconds)
    b = snap()
    dt = time.monotonic() - t0
    used = {k: round((b[k] - a.get(k, 0)) / hz / dt, 2) for k in b if b[k] > a.get(k, 0)}
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


class Results(dict):  # type: ignore[type-arg]
    """The figures, written to ``path`` and printed as each one is measured: an interrupted run keeps them."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key.endswith("_s") or key.endswith("_ok") or key == "converged":
            print(f"  {key}: {value}", flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self, indent=2, sort_keys=True) + "\n")


DRILL_SECONDS = 20.0  # pings through the whole DC power cut and after it


def run(site: Path, nodes_per_rack: int | None, timeout: float, health: str = "sample", ssh: str = "sample"
        ) -> dict[str, Any]:
    label = "twin" + (f"-{nodes_per_rack}" if nodes_per_rack else "")
    out = ROOT / "benchmarks" / ".work" / label / "inventories" / f"{site.name}-twin"
    m, twin_dir, diff = write_twin(site, out, nodes_per_rack=nodes_per_rack)
    prefix = lab_prefix()
    res = Results(ROOT / "benchmarks" / "results" / f"{label}.json")
    res.update({"site": str(site.relative_to(ROOT) if site.is_relative_to(ROOT) else site),
                "twin": str(twin_dir.relative_to(ROOT)), "nodes_per_rack": nodes_per_rack,
                "options": {"pods": "sample", "health": health, "ssh": ssh},
                "differs": differences(m, nodes_per_rack), "shape_differences": diff,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "mem_total_mib": round(_kib("/proc/meminfo", "MemTotal:") / 1024)}})
    down(twin_dir)
    res["mem_available_before_mib"] = round(mem_available_mib())
    try:
        t0 = time.monotonic()
        state = up(twin_dir, pods_per_node="sample", health=health, ssh=ssh, log=print)
        res["up_s"] = round(time.monotonic() - t0, 1)
        res["hosts"], res["pods"] = len(state["hosts"]), len(state["pods"])
        res["up_steps"] = state["timings"]
        t1 = time.monotonic()
        report = verify(twin_dir, timeout=timeout, log=print)
        res["converge_s"] = round(time.monotonic() - t1, 1)
        res["converged"] = report.ok
        res["checks"] = len(report.checks)
        res["failed_at_converge"] = [f"{c.name}: {c.detail}" for c in report.failed][:20]
        res["up_verified_s"] = round(time.monotonic() - t0, 1)
        report = verify(twin_dir, timeout=timeout)
        res["verify_s"] = round(report.seconds, 1)
        res["memory"] = memory(prefix)
        res["mem_available_after_mib"] = round(mem_available_mib())
        res["cpu_idle_cores"] = cpu(prefix)
        t2 = time.monotonic()
        # `lab drill dc dc2`: the failure applied while a pod of dc1 pings a pod of another rack, one of another DC
        # (dc3), the anycast and the API address at 20/s: what users lose, independent of verify's own duration.
        row = drill(twin_dir, "dc", ["dc2"], seconds=DRILL_SECONDS)
        res["fail_command_s"] = row["event_took_s"]
        res["dc_loss_drill"] = row
        report = verify(twin_dir, timeout=timeout)
        res["dc_loss_settled_s"] = round(time.monotonic() - t2, 1)
        res["dc_loss_ok"] = report.ok
        res["dc_loss_failed"] = [f"{c.name}: {c.detail}" for c in report.failed][:20]
        t3 = time.monotonic()
        subprocess.run([sys.executable, "-m", "provisioner", "lab", "restore", str(twin_dir)], check=True,
                       capture_output=True)
        report = verify(twin_dir, timeout=timeout)
        res["restore_verified_s"] = round(time.monotonic() - t3, 1)
        res["restore_ok"] = report.ok
        res["restore_failed"] = [f"{c.name}: {c.detail}" for c in report.failed][:20]
    finally:
        t4 = time.monotonic()
        down(twin_dir)
        res["down_s"] = round(time.monotonic() - t4, 1)
    return res


def _loss(row: dict[str, Any] | None) -> str:
    if not row:
        return "-"
    return "; ".join(f"{label} {x['lost']}/{x['sent']} (longest outage {x['longest_outage_s']} s)"
                     for label, x in row["loss"].items())


def _ok(res: dict[str, Any], key: str) -> str:
    return "ok" if res.get(key) else "FAILED"


def table(res: dict[str, Any]) -> str:
    mem = res.get("memory", {})
    rows = [("hosts / pods", f"{res.get('hosts')} / {res.get('pods')}"),
            ("lab up (" + " ".join(f"--{k} {v}" for k, v in res.get("options", {}).items()) + ")",
             f"{res.get('up_s')} s"),
            ("converge (up -> verify passes)", f"{res.get('converge_s')} s ({_ok(res, 'converged')})"),
            ("up + verified", f"{res.get('up_verified_s')} s"),
            ("verify (converged)", f"{res.get('verify_s')} s, {res.get('checks')} checks"),
            ("RSS / PSS of the lab's processes", f"{mem.get('rss_mib')} / {mem.get('pss_mib')} MiB "
                                                  f"({mem.get('processes')} processes)"),
            ("MemAvailable before -> after", f"{res.get('mem_available_before_mib')} -> "
                                             f"{res.get('mem_available_after_mib')} MiB"),
            ("fail dc dc2 -> settled", f"{res.get('dc_loss_settled_s')} s ({_ok(res, 'dc_loss_ok')}), the command "
                                       f"{res.get('fail_command_s')} s"),
            ("  packets lost meanwhile (20/s from a dc1 pod)", _loss(res.get("dc_loss_drill"))),
            ("restore -> verify passes", f"{res.get('restore_verified_s')} s ({_ok(res, 'restore_ok')})"),
            ("lab down", f"{res.get('down_s')} s")]
    out = ["| step | measured |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
           "| process | count | RSS MiB | PSS MiB | RSS each | idle cores |", "|---|---|---|---|---|---|"]
    idle = res.get("cpu_idle_cores", {})
    for name, r in mem.get("by_process", {}).items():
        out.append(f"| {name} | {r['processes']} | {r['rss_mib']} | {r['pss_mib']} | {r['rss_each_mib']} | "
                   f"{idle.get(name, 0)} |")
    return "\n".join(out)


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, default=ROOT / "inventories" / "example")
    ap.add_argument("--nodes-per-rack", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=600.0)
    for flag in ("--health", "--ssh"):
        ap.add_argument(flag, choices=("all", "sample", "none"), default="sample", help=f"lab up {flag}")
    args = ap.parse_args()
    res = run(args.site.resolve(), args.nodes_per_rack, args.timeout, args.health, args.ssh)
    print(table(res))  # the JSON is in benchmarks/results/twin[-N].json, written as the run goes
    return 0 if res.get("converged") else 1


if __name__ == "__main__":
    sys.exit(main())
