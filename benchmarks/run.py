"""Scale benchmark of provisioner, and the Ansible ``template`` peer, on this machine.

    .venv/bin/python benchmarks/run.py            # 100, 720, 3,000, 10,000 nodes (~5-10 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # 100 and 720 only

Every measurement is a whole ``provisioner`` process (interpreter start, imports, load, allocate, plan,
render, write), timed by wall clock over several runs, with the peak RSS of that child from
``os.wait4``. Prints a markdown table, writes ``benchmarks/results/latest.json`` and, for a full run,
``benchmarks/RESULTS.md``. See benchmarks/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

import gensite

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
TEMPLATES = ROOT / "templates"
SIZES = (100, 720, 3000, 10_000)
QUICK = (100, 720)
GiB = 1024**3


def default_runs(size: int) -> int:
    return 5 if size <= 720 else 3


def tool(name: str) -> str:
    """A console script of the venv this benchmark runs in (falling back to PATH)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"benchmark: {name} not found next to {sys.executable} or on PATH")
    return found


# --- measuring a child process ---------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    rss_kib: int
    rc: int
    stdout: str
    cpu: float = 0.0  # user + system seconds of the child
    sys: float = 0.0  # of which system (kernel) seconds


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Run ``argv`` to completion: wall seconds, the child's peak RSS (KiB), exit code, stdout."""
    out_path = WORK / f".stdout-{os.getpid()}"
    with open(out_path, "w+b") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    out_path.unlink()
    return Sample(wall=wall, rss_kib=usage.ru_maxrss, rc=proc.returncode, stdout=text,
                  cpu=usage.ru_utime + usage.ru_stime, sys=usage.ru_stime)


@dataclass
class Row:
    size: int
    what: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    @property
    def walls(self) -> list[float]:
        return [s.wall for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu_median(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def sys_median(self) -> float:
        return statistics.median(s.sys for s in self.samples)

    @property
    def peak_rss(self) -> int:
        return max(s.rss_kib for s in self.samples) * 1024

    def as_json(self) -> dict[str, Any]:
        return {"nodes": self.size, "command": self.what, "runs": len(self.samples),
                "median_s": round(self.median, 4), "min_s": round(min(self.walls), 4),
                "max_s": round(max(self.walls), 4), "walls_s": [round(w, 4) for w in self.walls],
                "cpu_median_s": round(self.cpu_median, 4), "cpu_s": [round(s.cpu, 4) for s in self.samples],
                "sys_s": [round(s.sys, 4) for s in self.samples],
                "peak_rss_bytes": self.peak_rss, "exit_codes": sorted({s.rc for s in self.samples}),
                "note": self.note}


def repeat(size: int, what: str, runs: int, argv: list[str], cwd: Path, ok=(0,), before=None, after=None) -> Row:
    row = Row(size, what)
    for i in range(runs):
        if before:
            before(i)
        # Flush the benchmark's own leftovers (the previous run's files, the trees it just removed) so that
        # one run's write-back does not land in the next run's time. The timed command itself never syncs.
        os.sync()
        sample = measure(argv(i) if callable(argv) else argv, cwd)
        if sample.rc not in ok:
            raise SystemExit(f"benchmark: {what} ({size} nodes) exited {sample.rc}:\n{sample.stdout[-3000:]}")
        row.samples.append(sample)
        if after:
            after(i, sample)
    print(f"  {what:<28} median {row.median:7.3f} s  (min {min(row.walls):.3f}, max {max(row.walls):.3f})  "
          f"CPU {row.cpu_median:6.3f} s  peak RSS {row.peak_rss / 2**20:6.1f} MiB", flush=True)
    return row


# --- the provisioner side --------------------------------------------------------------------


def has_check(prov: str) -> bool:
    return measure([prov, "check", "--help"], ROOT).rc == 0


WRITTEN_RE = re.compile(r"\((\d+) written, (\d+) unchanged\)")


def tree_files(root: Path) -> list[str]:
    """Rendered files under ``root``, without the tree's own top-level marker dotfiles."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out += [os.path.join(dirpath, f) for f in files if not (dirpath == str(root) and f.startswith("."))]
    return out


def inodes(root: Path) -> dict[str, int]:
    return {os.path.relpath(full, root): os.stat(full).st_ino for full in tree_files(root)}


def bench_size(size: int, runs: int, prov: str, check: bool) -> tuple[list[Row], dict[str, Any]]:
    """Every command on one site. Returns the rows and facts about the site and the re-render."""
    work = WORK / str(size)
    shutil.rmtree(work, ignore_errors=True)
    site = gensite.write_site(size, work / "site")
    plus = gensite.write_site(size, work / "site-plus-rack", plus_rack=True)
    out = work / "out"
    print(f"{size} nodes ({work}):", flush=True)
    warm = measure([prov, "render", str(site), "--out", str(out)], ROOT)  # writes the lock, warms caches
    if warm.rc != 0:
        raise SystemExit(f"benchmark: first render of the {size}-node site failed:\n{warm.stdout[-3000:]}")
    shutil.copyfile(site / "allocations.yaml", plus / "allocations.yaml")
    files = len(tree_files(out))
    facts: dict[str, Any] = {"files": files, "summary": warm.stdout.splitlines()[0] if warm.stdout else ""}
    rows = []

    rows.append(repeat(size, "validate", runs, [prov, "validate", str(site)], ROOT))

    def cold_dir(i: int) -> Path:
        return work / f"cold-{i}"

    def make_cold(i: int) -> None:
        cold_dir(i).mkdir()

    def drop_cold(i: int, sample: Sample) -> None:
        shutil.rmtree(cold_dir(i))

    row = repeat(size, "render (cold, empty dir)", runs,
                 lambda i: [prov, "render", str(site), "--out", str(cold_dir(i))], ROOT,
                 before=make_cold, after=drop_cold)
    row.note = f"{files} files"
    rows.append(row)

    row = repeat(size, "render (nothing changed)", runs, [prov, "render", str(site), "--out", str(out)], ROOT)
    m = WRITTEN_RE.search(row.samples[-1].stdout)
    row.note = f"{m.group(1)} written, {m.group(2)} unchanged" if m else "?"
    rows.append(row)

    row = repeat(size, "plan (nothing changed)", runs, [prov, "plan", str(site), "--out", str(out)], ROOT)
    row.note = "no changes" if "no changes" in row.samples[-1].stdout else "CHANGES?"
    rows.append(row)

    row = repeat(size, "plan (one rack added)", runs, [prov, "plan", str(plus), "--out", str(out)], ROOT)
    m = re.search(r"(\d+) to add, (\d+) to remove, (\d+) to change", row.samples[-1].stdout)
    row.note = f"files: +{m.group(1)} -{m.group(2)} ~{m.group(3)}" if m else "?"
    rows.append(row)

    # Re-render after adding a rack: only the files that changed may be written; unchanged files
    # stay the same inode (hard-linked from the previous tree).
    staged = work / "rerender-out"
    site_copy = work / "rerender-site"
    before_inodes: dict[str, int] = {}
    rerender: dict[str, Any] = {}

    def stage(i: int) -> None:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(site_copy, ignore_errors=True)
        shutil.copytree(out, staged, copy_function=os.link)
        shutil.copytree(plus, site_copy)
        before_inodes.clear()
        before_inodes.update(inodes(staged))

    def verify(i: int, sample: Sample) -> None:
        after_inodes = inodes(staged)
        new_or_rewritten = sum(1 for p, ino in after_inodes.items() if before_inodes.get(p) != ino)
        kept = sum(1 for p, ino in after_inodes.items() if before_inodes.get(p) == ino)
        m = WRITTEN_RE.search(sample.stdout)
        rerender.update(written=int(m.group(1)) if m else None, unchanged=int(m.group(2)) if m else None,
                        inode_changed=new_or_rewritten, inode_kept=kept, files=len(after_inodes))

    row = repeat(size, "render (one rack added)", runs,
                 [prov, "render", str(site_copy), "--out", str(staged)], ROOT, before=stage, after=verify)
    ok = rerender.get("written") == rerender["inode_changed"]
    rerender["only_changed_written"] = ok
    row.note = (f"{rerender.get('written')} written, {rerender.get('unchanged')} hard-linked"
                f"{'' if ok else ' (INODE MISMATCH: ' + str(rerender['inode_changed']) + ' new inodes)'}")
    rows.append(row)
    facts["rerender_one_rack"] = rerender

    if check:
        row = repeat(size, "check", runs, [prov, "check", str(site)], ROOT, ok=(0, 1))
        row.note = f"exit {row.samples[-1].rc}"
        rows.append(row)

    return rows, facts


# --- the Ansible peer ------------------------------------------------------------------------

PLAYBOOK = """\
# The peer: one ``template`` task per host, local connection, as Kubespray-style roles render configs.
- hosts: all
  gather_facts: false
  tasks:
    - name: render {template_name}
      ansible.builtin.template:
        src: {template}
        dest: "{out}/{{{{ inventory_hostname }}}}.{output_name}"
        mode: "0644"
        trim_blocks: true
        lstrip_blocks: true
"""

FILTERS = """\
# The custom filters of provisioner's Jinja environment, so the same template text works in Ansible.
import jinja2.defaults

from provisioner.render import environment


class FilterModule:
    def filters(self):
        return {k: v for k, v in environment().filters.items() if k not in jinja2.defaults.DEFAULT_FILTERS}
"""


def peer_template() -> Path:
    bird = TEMPLATES / "node" / "bird.conf.j2"
    return bird if bird.exists() else TEMPLATES / "node" / "cni.conflist.j2"


def to_data(value: Any, depth: int = 0) -> Any:
    """Plain YAML data of a Plan object: dataclass fields and properties, addresses as strings."""
    import dataclasses
    from ipaddress import IPv4Address, IPv4Network

    from pydantic import BaseModel

    if depth > 12:
        raise ValueError("object graph too deep for the adapter")
    if isinstance(value, IPv4Address | IPv4Network):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value):
        out = {f.name: to_data(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
        for name in dir(type(value)):
            if isinstance(getattr(type(value), name, None), property):
                with contextlib.suppress(TypeError, ValueError, AttributeError):
                    out[name] = to_data(getattr(value, name), depth + 1)
        return out
    if isinstance(value, dict):
        return {str(k): to_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_data(v, depth + 1) for v in value]
    return value


def bench_ansible(size: int, render_row: Row, prov_files: Path, runs: int) -> dict[str, Any]:
    """Render the node template for every node of the site through ansible-playbook; compare bytes."""
    import yaml

    from provisioner.pipeline import compile_site

    template = peer_template()
    rel = template.relative_to(TEMPLATES)
    output_name = template.name[: -len(".j2")]
    work = WORK / f"ansible-{size}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "filter_plugins").mkdir(parents=True)
    (work / "filter_plugins" / "provisioner_filters.py").write_text(FILTERS)
    plan = compile_site(WORK / str(size) / "site").plan
    text = template.read_text()
    # The adapter: per-host ``node`` (the PlanNode) and a shared ``plan`` holding the attributes the
    # template reads, pre-computed from the Plan into the inventory. The template text is unchanged.
    plan_attrs = sorted(set(re.findall(r"\bplan\.(\w+)", text)))
    inventory = {"all": {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "plan": {a: to_data(getattr(plan, a)) for a in plan_attrs},
        },
        "hosts": {n.hostname: {"node": to_data(n)} for n in plan.nodes},
    }}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    out = work / "out"
    (work / "site.yml").write_text(PLAYBOOK.format(template_name=rel, template=template, out=out,
                                                   output_name=output_name))
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(work / "ansible.cfg"), ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"), ANSIBLE_REMOTE_TEMP=str(work / "tmp"),
        ANSIBLE_FILTER_PLUGINS=str(work / "filter_plugins"), ANSIBLE_RETRY_FILES_ENABLED="false",
        ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="false",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    (work / "ansible.cfg").write_text("[defaults]\n")
    forks = int(os.environ.get("ANSIBLE_FORKS", "5"))
    samples = []
    print(f"ansible-playbook: {rel} for {len(plan.nodes)} hosts, forks={forks} ...", flush=True)
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        s = measure([tool("ansible-playbook"), "-i", str(work / "inventory.yml"), str(work / "site.yml")],
                    work, env=env)
        if s.rc != 0:
            raise SystemExit(f"benchmark: ansible-playbook exited {s.rc}:\n{s.stdout[-4000:]}")
        samples.append(s)
    same = sum(1 for n in plan.nodes
               if (out / f"{n.hostname}.{output_name}").read_bytes()
               == (prov_files / "nodes" / n.hostname / output_name).read_bytes())
    hosts = len(plan.nodes)
    ansible_wall = statistics.median(s.wall for s in samples)
    prov_per_host = render_row.median / size
    ansible_per_host = ansible_wall / hosts
    result = {
        "nodes": size, "template": str(rel), "hosts": hosts, "forks": forks, "runs": len(samples),
        "ansible_median_s": round(ansible_wall, 3), "ansible_walls_s": [round(s.wall, 3) for s in samples],
        "ansible_peak_rss_bytes": max(s.rss_kib for s in samples) * 1024,
        "ansible_s_per_host": ansible_per_host,
        "provisioner_render_median_s": round(render_row.median, 4),
        "provisioner_s_per_host": prov_per_host,
        "ratio": ansible_per_host / prov_per_host,
        "identical_outputs": same,
    }
    print(f"  ansible-playbook median {ansible_wall:.2f} s = {ansible_per_host * 1000:.1f} ms/host; provisioner "
          f"render {prov_per_host * 1000:.3f} ms/host (every file of the site); ratio {result['ratio']:.0f}x; "
          f"{same}/{hosts} outputs byte-identical", flush=True)
    return result


# --- report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_bytes": mem, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": os.getloadavg()}


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "provisioner", "templates"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def targets(rows: list[Row], ansible: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def find(size: int, what: str) -> Row | None:
        return next((r for r in rows if r.size == size and r.what == what), None)

    out = []

    def add(name: str, measured: float | None, limit: float, unit: str, higher_is_better: bool = False,
            best: float | None = None) -> None:
        if measured is None:
            out.append({"target": name, "measured": None, "best": None, "limit": limit, "unit": unit, "pass": None})
            return
        ok = measured >= limit if higher_is_better else measured <= limit
        out.append({"target": name, "measured": measured, "best": best, "limit": limit, "unit": unit, "pass": ok})

    r720 = find(720, "render (cold, empty dir)")
    p720 = find(720, "plan (nothing changed)")
    r10k = find(10_000, "render (cold, empty dir)")
    add("720-node render, wall (median)", r720 and r720.median, 1.0, "s", best=r720 and min(r720.walls))
    add("no-op plan, 720 nodes, wall (median)", p720 and p720.median, 1.0, "s", best=p720 and min(p720.walls))
    add("10,000-node render, wall (median)", r10k and r10k.median, 10.0, "s", best=r10k and min(r10k.walls))
    add("10,000-node render, peak RSS", r10k and r10k.peak_rss / GiB, 1.0, "GiB")
    add("10,000 / 720 render time", r10k and r720 and r10k.median / r720.median, 16.0, "x",
        best=r10k and r720 and min(r10k.walls) / min(r720.walls))
    best = min((a["ratio"] for a in ansible), default=None)
    add("per host vs ansible template", best, 100.0, "x faster", higher_is_better=True)
    return out


def fmt_num(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "x faster":
        return f"{value:,.0f}x"
    if unit == "GiB":
        return f"{value * 1024:.0f} MiB"
    return f"{value:.2f} {unit}" if unit != "x" else f"{value:.1f}x"


def markdown(rows: list[Row], tgts: list[dict[str, Any]], ansible: list[dict[str, Any]], info: dict[str, Any],
             facts: dict[int, dict[str, Any]]) -> str:
    m = info["machine"]
    lines = [
        f"Measured {info['date']} at commit `{info['commit']}` on {m['nproc']} CPUs ({m['cpu']}), "
        f"{(m['memory_bytes'] or 0) / GiB:.0f} GiB RAM, Python {m['python']}; "
        f"load average {m['loadavg_start'][0]:.2f} at start, {info['loadavg_end'][0]:.2f} at end.",
    ]
    if max(m["loadavg_start"][0], info["loadavg_end"][0]) > 0.5 * (m["nproc"] or 1):
        lines.append("The machine was shared with other work during this run, so these timings are noisy "
                     "(upper bounds rather than best cases).")
    lines += ["", "| nodes | command | runs | median s | min–max s | CPU s (kernel) | peak RSS MiB | notes |",
              "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.size:,} | `{r.what}` | {len(r.samples)} | {r.median:.3f} | "
                     f"{min(r.walls):.3f}–{max(r.walls):.3f} | {r.cpu_median:.2f} ({r.sys_median:.2f}) | "
                     f"{r.peak_rss / 2**20:.0f} | {r.note} |")
    cold = [r for r in rows if r.what == "render (cold, empty dir)" and r.sys_median > 0.5 * r.cpu_median]
    if cold:
        lines += ["", "Most of the CPU time of the cold renders at "
                  + ", ".join(f"{r.size:,} nodes ({r.sys_median:.1f} s of {r.cpu_median:.1f} s)" for r in cold)
                  + " was kernel time: creating the files and directories of the tree (the same pipeline with "
                  "nothing to write, `render (nothing changed)`, shows the cost of everything else)."]
    lines += ["", "Files per site: " + ", ".join(f"{s:,} nodes → {f['files']:,} files" for s, f in facts.items())
              + "."]
    for a in ansible:
        lines += ["", f"Peer: `ansible-playbook` rendering `templates/{a['template']}` with the `template` module, "
                  f"local connection, forks={a['forks']}, for the {a['hosts']} nodes of the {a['nodes']}-node site: "
                  f"{a['ansible_median_s']:.2f} s ({a['ansible_s_per_host'] * 1000:.1f} ms per host, "
                  f"peak RSS {a['ansible_peak_rss_bytes'] / 2**20:.0f} MiB); provisioner renders the whole site "
                  f"(every file, not just this template) in {a['provisioner_render_median_s']:.3f} s "
                  f"({a['provisioner_s_per_host'] * 1000:.2f} ms per node): **{a['ratio']:,.0f}× faster per host**. "
                  f"{a['identical_outputs']}/{a['hosts']} Ansible outputs are byte-identical to provisioner's. "
                  "Against provisioner's per-node cost at each size (whole-site cold render ÷ nodes): "
                  + ", ".join(f"{n:,} nodes {x:,.0f}×" for n, x in a.get("ratio_by_size", {}).items()) + "."]
    lines += ["", "| target | measured | best run | limit | result |", "|---|---:|---:|---:|---|"]
    for t in tgts:
        res = "n/a" if t["pass"] is None else ("pass" if t["pass"] else "**FAIL**")
        limit = f"≥ {t['limit']:,.0f}x" if t["unit"] == "x faster" else (
            f"≤ {t['limit']:g} GiB" if t["unit"] == "GiB" else f"≤ {t['limit']:g}{' s' if t['unit'] == 's' else 'x'}")
        best = "" if t.get("best") is None else fmt_num(t["best"], t["unit"])
        lines.append(f"| {t['target']} | {fmt_num(t['measured'], t['unit'])} | {best} | {limit} | {res} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the 100- and 720-node sites")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="e.g. 100,720,3000")
    ap.add_argument("--runs", type=int, help="runs per command (default 5 up to 720 nodes, 3 above)")
    ap.add_argument("--ansible-sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[100],
                    help="sites to render through ansible-playbook too (default 100; empty to skip)")
    ap.add_argument("--ansible-runs", type=int, default=1)
    ap.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    ap.add_argument("--results-md", action=argparse.BooleanOptionalAction, default=None,
                    help="write benchmarks/RESULTS.md (default: only for a full run)")
    ap.add_argument("--keep", action="store_true", help="keep benchmarks/.work/ afterwards")
    args = ap.parse_args(argv)
    sizes = args.sizes or (QUICK if args.quick else SIZES)
    full = not args.quick and not args.sizes and args.runs is None
    write_md = full if args.results_md is None else args.results_md

    WORK.mkdir(parents=True, exist_ok=True)
    prov = tool("provisioner")
    info: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                            "commit": git_rev(), "machine": machine(), "command": " ".join(sys.argv)}
    check = has_check(prov)
    print(f"provisioner: {prov}; `check` {'found, timed' if check else 'not found, skipped'}; "
          f"peer template: {peer_template().relative_to(ROOT)}", flush=True)
    started = time.perf_counter()
    rows: list[Row] = []
    facts: dict[int, dict[str, Any]] = {}
    ansible = []
    for size in sizes:
        size_rows, facts[size] = bench_size(size, args.runs or default_runs(size), prov, check)
        rows += size_rows
        if size in args.ansible_sizes:
            render_row = next(r for r in size_rows if r.what == "render (cold, empty dir)")
            ansible.append(bench_ansible(size, render_row, WORK / str(size) / "out", args.ansible_runs))
        if not args.keep:
            shutil.rmtree(WORK / str(size), ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    for a in ansible:  # the same Ansible cost per host against provisioner's per-node cost at every size
        a["ratio_by_size"] = {r.size: a["ansible_s_per_host"] / (r.median / r.size) for r in rows
                              if r.what == "render (cold, empty dir)"}
    info["duration_s"] = round(time.perf_counter() - started, 1)
    tgts = targets(rows, ansible)
    md = markdown(rows, tgts, ansible, info, facts)
    print()
    print(md)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**info, "sites": facts, "results": [r.as_json() for r in rows],
                                     "ansible": ansible, "targets": tgts}, indent=2) + "\n")
    print(f"wrote {args.json} ({info['duration_s']} s)")
    if write_md:
        (BENCH / "RESULTS.md").write_text(
            "# Benchmark results\n\n"
            "Written by `.venv/bin/python benchmarks/run.py` (see benchmarks/README.md). All times are whole "
            "`provisioner` processes.\n\n" + md)
        print(f"wrote {BENCH / 'RESULTS.md'}")
        readme = BENCH / "README.md"
        if readme.exists():
            text = readme.read_text()
            start, end = "<!-- results:start -->\n", "<!-- results:end -->"
            if start in text and end in text:
                head, rest = text.split(start, 1)
                readme.write_text(head + start + md + rest[rest.index(end):])
                print(f"updated the latest numbers in {readme}")
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
