"""lab: bring a site up in network namespaces on this machine, verify it, break it, restore it, remove it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from ..report import text_table, to_json

site_argument = click.argument("site", type=click.Path(path_type=Path))
lab_format = click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
timeout_option = click.option("--timeout", type=float, default=90.0, show_default=True,
                              help="seconds to wait for convergence before declaring a failure")


def _pods_value(value: str) -> str:
    if value in ("sample", "none") or (value.isdigit() and 0 <= int(value) <= 16):
        return value
    raise click.BadParameter(f"{value!r}: give a number of pods per node (0-16), 'sample' or 'none'")


def _need_root() -> None:
    if os.geteuid() != 0:
        click.echo("provisioner lab needs root (network namespaces, veth links, mounts); run it with sudo",
                   err=True)
        raise click.exceptions.Exit(2)


def _guard(fn):
    """Expected lab failures print a message, not a traceback (exit 1; bad topology or a bad name exit 2)."""
    from ..lab.netns import LabError, LabUsageError
    from ..lab.topology import TopologyError

    try:
        return fn()
    except (TopologyError, LabUsageError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    except LabError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None


@click.group()
def lab() -> None:
    """Network-namespace lab of SITE (root): FRR switches, BIRD nodes, sshd and etcd on every host.

    Names use the lab prefix (PROVISIONER_LAB_PREFIX, default plab); state lives in .lab/<site>/.
    """


def _print_report(report, fmt: str) -> None:
    if fmt == "json":
        click.echo(to_json(report.as_dict()), nl=False)
        return
    click.echo(text_table(("check", "status", "detail"), report.rows()))
    click.echo(report.summary())


@lab.command()
@site_argument
@click.option("--bare", is_flag=True,
              help="namespaces, links, sshd, FRR and the kube-proxy/apiserver stand-ins only: BIRD, health "
                   "checks, etcd and pods are left to apply; no verify")
@click.option("--pods", "pods", default="1", show_default=True, callback=lambda _c, _p, v: _pods_value(v),
              help="pods per node wired by the CNI plugins: a number, 'sample' (one per rack) or 'none'")
@click.option("--health", type=click.Choice(["all", "sample", "none"]), default="all", show_default=True,
              help="nodes with the kube-proxy stand-in and anycast-healthchecker; the others (sample: all but the "
                   "first node of each rack) announce anycast unconditionally from a socat stand-in")
@click.option("--ssh", type=click.Choice(["all", "sample", "none"]), default="all", show_default=True,
              help="hosts running sshd (sample: switches, VMs and the first node of each rack); apply needs all")
@timeout_option
def up(site: Path, bare: bool, pods: str, health: str, ssh: str, timeout: float) -> int:
    """Create the lab of SITE and (unless --bare) verify it. --health/--ssh/--pods sample fit a large site (the
    scale twin, docs/lab.md) on a small machine."""
    _need_root()
    from ..lab import up as up_mod
    from ..lab.teardown import down as down_fn

    click.echo(f"lab up {site}{' (bare)' if bare else ''}:")
    t0 = time.monotonic()
    try:
        state = _guard(lambda: up_mod.up(site, bare=bare, pods_per_node=pods, health=health,
                                                     ssh=ssh, log=click.echo))
    except BaseException as exc:
        if isinstance(exc, click.exceptions.Exit) and exc.exit_code == 2:
            raise  # refused before anything was made (bad input, a lab already up): leave everything as it is
        click.echo("lab up failed; removing what it made (lab down)", err=True)
        down_fn(site)
        raise
    click.echo(f"lab {state['site']} up in {state['up_seconds']:.1f}s: {len(state['hosts'])} hosts "
               f"(prefix {state['prefix']}); inventory overlay {state['state_dir']}/inventory.yml")
    if bare:
        rows = [(name, h["role"], h["ns"], h["mgmt_address"]) for name, h in sorted(state["hosts"].items())]
        click.echo(text_table(("host", "role", "namespace", "ssh"), rows))
        click.echo("bare: FRR runs on the switches; BIRD and etcd are left to `provisioner apply`")
        return 0
    from ..lab import verify as verify_mod

    report = _guard(lambda: verify_mod.verify(site, timeout=timeout))
    _print_report(report, "text")
    click.echo(f"lab up + verify: {time.monotonic() - t0:.1f}s")
    return 0 if report.ok else 1


@lab.command()
@site_argument
@lab_format
@timeout_option
def verify(site: Path, fmt: str, timeout: float) -> int:
    """Check sessions, routes, anycast, etcd and the API address against the Plan (exit 1 on a failure)."""
    _need_root()
    from ..lab import verify as verify_mod

    report = _guard(lambda: verify_mod.verify(site, timeout=timeout))
    _print_report(report, fmt)
    return 0 if report.ok else 1


@lab.command()
@site_argument
@click.argument("kind", type=click.Choice(("dc", "host", "link", "service", "crash", "restart")))
@click.argument("names", nargs=-1, required=True)
def fail(site: Path, kind: str, names: tuple[str, ...]) -> int:
    """Fail a DC (`dc NAME`), a host (`host NAME`) or a link (`link A B`) as a power or link cut; make a
    service unhealthy (`service HOST|DC`: kube-proxy/apiserver stand-in stopped); or crash a routing daemon
    (`crash HOST`: kill -9 of BIRD or bgpd, restarted by the supervisor a second later) or restart it
    (`restart HOST`: a planned restart of BIRD, or of FRR on a switch)."""
    _need_root()
    from ..lab import fail as fail_mod

    entry = _guard(lambda: fail_mod.fail(site, kind, names))
    click.echo(fail_mod.describe(entry))
    return 0


@lab.command()
@site_argument
@click.argument("kind", type=click.Choice(("dc", "host", "link", "service", "crash", "restart")))
@click.argument("names", nargs=-1, required=True)
@click.option("--from", "source", default=None, metavar="POD", help="the pod that sends the probes")
@click.option("--seconds", type=click.FloatRange(2, 120), default=8.0, show_default=True,
              help="how long the probes run (20 per second per target)")
@lab_format
def drill(site: Path, kind: str, names: tuple[str, ...], source: str | None, seconds: float, fmt: str) -> int:
    """`lab fail KIND NAMES` measured in packets: lost probes and the longest outage to a pod of another rack,
    a pod of another DC, the anycast and the API address. Recorded for `lab verify --format json`; undo with
    `lab restore`."""
    _need_root()
    from ..lab import drill as drill_mod

    row = _guard(lambda: drill_mod.drill(site, kind, list(names), source=source, seconds=seconds))
    click.echo(json.dumps(row, indent=2) if fmt == "json" else drill_mod.describe(row))
    return 0


@lab.command()
@site_argument
def restore(site: Path) -> int:
    """Undo every recorded failure: restart stopped daemons, bring cut links up."""
    _need_root()
    from ..lab import fail as fail_mod

    undone = _guard(lambda: fail_mod.restore(site))
    click.echo(f"restored {len(undone)} failure(s)" + "".join(f"\n  {fail_mod.describe(e)}" for e in undone))
    return 0


@lab.command()
@site_argument
def down(site: Path) -> int:
    """Remove every namespace, link, process and file of the lab (safe twice, and after a crash)."""
    _need_root()
    from ..lab.teardown import down as down_fn

    t0 = time.monotonic()
    report = _guard(lambda: down_fn(site))
    click.echo(f"lab down (prefix {report['prefix']}): {len(report['namespaces'])} namespaces, "
               f"{len(report['links'])} root links, {report['processes']} processes, "
               f"{len(report['files'])} paths removed in {time.monotonic() - t0:.1f}s")
    return 0


@lab.command()
@site_argument
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="directory of the twin site (site.yaml and allocations.yaml are written there)")
@click.option("--nodes-per-rack", type=click.IntRange(min=1), default=None,
              help="keep only the first N nodes of each rack (a scaled twin, when the whole one does not fit)")
@lab_format
def twin(site: Path, out: Path, nodes_per_rack: int | None, fmt: str) -> int:
    """Write the scale twin of SITE into --out: the same topology renumbered into 198.18.0.0/15 by the
    documented mapping (docs/lab.md), then print the mapping and what differs. Needs no root."""
    from ..lab import twin as twin_mod

    m, where, diff = _guard(lambda: twin_mod.write_twin(site, out, nodes_per_rack=nodes_per_rack))
    if fmt == "json":
        click.echo(to_json({"twin": str(where), "mapping": [dict(zip(("kind", "source", "twin"), r, strict=True))
                                                              for r in m.rows()],
                            "differs": twin_mod.differences(m, nodes_per_rack), "shape_differences": diff}), nl=False)
    else:
        click.echo(f"twin of {site} written to {where}/ (site.yaml, allocations.yaml)")
        click.echo(text_table(("what", "source", "twin"), m.rows()))
        click.echo("differs from the source:" + "".join(f"\n  - {d}" for d in twin_mod.differences(m, nodes_per_rack)))
        click.echo("same as the source: DCs, racks, nodes, switches, VMs, upstreams, sessions, ASNs, ECMP widths, "
                   "limits" if not diff else "shape differences:" + "".join(f"\n  - {d}" for d in diff))
    return 1 if diff and nodes_per_rack is None else 0
