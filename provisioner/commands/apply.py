"""apply and rollback: push a rendered tree to the hosts through pre-flight, canary and health gates."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..paths import runs_root as project_runs
from ..paths import secrets_dir
from ..pipeline import Compiled, compile_site
from ..render import render as render_plan
from ..report import text_table
from ..write import read_tree
from .core import default_out, site_argument

EXIT_HELP = "Exit codes: 0 every host passed; 1 pre-flight refused, a gate failed or a host failed; 2 bad input."


def _options(fn):
    opts = [
        click.option("--limit", default=None, metavar="PATTERN",
                     help="only hosts matching this Ansible pattern (groups: nodes, tors, rack_<rack>, dc1...)"),
        click.option("--check", is_flag=True,
                     help="Ansible check mode with diff: show what would change, change nothing"),
        click.option("--canary", default=None, metavar="RACK", help="canary rack [default: first rack in site order]"),
        click.option("--batch", default="rack", show_default=True, metavar="rack|N%",
                     help="racks per batch after the canary: one rack, or N% of the remaining racks"),
        click.option("--yes", is_flag=True, help="do not ask for confirmation (needed without a terminal)"),
        click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True),
        click.option("-i", "--inventory", "inventories", multiple=True, type=click.Path(path_type=Path, exists=True),
                     help="inventory overlay read after the rendered one (e.g. .lab/<site>/inventory.yml); repeatable"),
        click.option("--accept-new-host-keys", is_flag=True,
                     help="first bootstrap only: record host keys not yet in known_hosts (a changed key is refused)"),
        click.option("--secrets-file", type=click.Path(path_type=Path, exists=True), default=None,
                     help="Ansible Vault (or plain) YAML with bgp_secrets: {NAME: value}"),
        click.option("--vault-password-file", type=click.Path(path_type=Path, exists=True), default=None),
        click.option("--pki", "pki_dir", type=click.Path(path_type=Path), default=None,
                     help="etcd PKI from `provisioner pki` [default: secrets/<site>/ of the project]"),
        click.option("--runs-dir", type=click.Path(path_type=Path), default=None,
                     help="where run directories go [default: runs/ of the project]; runs/<site>/<run_id>/"),
        click.option("--gate-timeout", type=click.IntRange(5, 3600), default=60, show_default=True,
                     help="seconds a host's health gate waits for its BGP sessions / etcd health"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def compile_current(site: Path) -> Compiled:
    compiled = compile_site(site)
    if compiled.plan.change.lock_changes:
        raise InputError(f"{compiled.source.lock_file} is not up to date with site.yaml (new allocations pending): "
                         "run `provisioner render` and review the change first")
    return compiled


def _confirm_factory(yes: bool, check: bool, fmt: str):
    if yes or check:
        return None
    if not sys.stdin.isatty():
        raise InputError("refusing to change hosts without confirmation: no terminal to ask on; pass --yes "
                         "(or --check to only see what would change)")

    def confirm(batches) -> bool:
        hosts = sum(len(b.hosts) for b in batches)
        for i, b in enumerate(batches, 1):
            shown = ", ".join(b.hosts[:6]) + (f", ... ({len(b.hosts)} hosts)" if len(b.hosts) > 6 else "")
            click.echo(f"  {i}. {b.name}: {shown}", err=True)
        return click.confirm(f"apply to {hosts} hosts in {len(batches)} batches?", default=False, err=True)

    return confirm


def _run(compiled: Compiled, tree: dict[str, str], *, mode: str, source: dict[str, Any], limit, check, canary,
         batch, yes, fmt, inventories, accept_new_host_keys, secrets_file, vault_password_file, pki_dir, runs_dir,
         gate_timeout) -> int:
    from ..apply.engine import Request, execute
    from ..apply.progress import Progress

    confirm = _confirm_factory(yes, check, fmt)
    plan = compiled.plan
    runs_root = (runs_dir or project_runs(compiled.source.directory)) / plan.name
    live = fmt == "text" and sys.stderr.isatty()
    req = Request(
        plan=plan, tree=tree, runs_root=runs_root, mode=mode, source=source, inventories=list(inventories),
        check=check, canary=canary, batch=batch, limit=limit, accept_new_host_keys=accept_new_host_keys,
        secrets_file=secrets_file, vault_password_file=vault_password_file,
        pki_dir=pki_dir or secrets_dir(compiled.source.directory), gate_timeout=gate_timeout, confirm=confirm,
        progress=Progress(live=live),
    )
    if fmt == "text":
        _plan_text(req)
    code, report = execute(req)
    if fmt == "json":
        report.pop("outcomes", None)
        click.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        click.echo(report_text(report))
    return code


def _plan_text(req) -> None:
    click.echo(f"{req.mode} site {req.plan.name}" + (" (check mode: nothing will change)" if req.check else ""),
               err=True)


def report_text(report: dict[str, Any]) -> str:
    from ..apply.progress import summary_text

    lines = [f"run {report['run_id']} ({report['run_dir']})"]
    pre = report.get("preflight") or {}
    if pre.get("mismatches"):
        lines.append(f"pre-flight refused: {len({m['host'] for m in pre['mismatches']})} of {pre['hosts']} hosts "
                     "do not match the model; nothing was changed")
        lines.append(text_table(("host", "check", "expected", "actual"),
                                [(m["host"], m["check"], m["expected"], m["actual"]) for m in pre["mismatches"]]))
    elif pre:
        lines.append(f"pre-flight: {pre['hosts']} hosts ok")
    if report.get("outcomes"):
        lines.append(summary_text(report["outcomes"]))
    for host, msg in sorted((report.get("messages") or {}).items()):
        lines.append(f"{host}: {msg}")
    if report.get("check"):
        for host, diffs in sorted((report.get("diffs") or {}).items()):
            for d in diffs:
                if d.get("hidden"):
                    lines.append(f"~ {host}: {d['task']} (content hidden: it holds secrets)")
                else:
                    lines.append(f"~ {host}: {d.get('path') or d['task']}")
                    lines += [f"    {line}" for line in _diff(d)]
    status = report.get("status")
    changed = report.get("changed", 0)
    if status == "ok":
        verb = "would change" if report.get("check") else "changed"
        lines.append(f"ok: {changed} tasks {verb}" if changed else "ok: nothing changed" if not report.get("check")
                     else "ok: nothing would change")
    else:
        lines.append(f"{status}: see above and {report['run_dir']}")
    return "\n".join(lines)


def _diff(d: dict[str, Any]) -> list[str]:
    import difflib

    before, after = str(d.get("before", "")), str(d.get("after", ""))
    return [line.rstrip("\n") for line in difflib.unified_diff(before.splitlines(), after.splitlines(), "before",
                                                                 "after", lineterm="")][2:]


@click.command(epilog=EXIT_HELP)
@site_argument
@click.option("--tree", "tree_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="push this rendered tree of SITE instead of rendering it (an emergency edit, a test)")
@_options
def apply(site: Path, tree_dir: Path | None, **kw: Any) -> int:
    """Apply SITE: pre-flight every host, then changed switches, etcd, the canary rack, the other racks.

    Each host passes a health gate (BGP sessions Established, its prefixes exported, etcd healthy) or is
    reverted; the rollout stops at the first failed batch. Every run is kept in runs/<site>/<run_id>/.
    """
    compiled = compile_current(site)
    if tree_dir is not None:
        tree = read_tree(tree_dir)
        source = {"kind": "tree", "path": str(tree_dir.resolve())}
    else:
        tree = render_plan(compiled.plan)
        committed = default_out(compiled.source)
        if committed.is_dir() and read_tree(committed) != tree:
            raise InputError(f"{committed} is out of date with the site model: run `provisioner render`, review "
                             "and commit it first (apply pushes what was reviewed)")
        source = {"kind": "render", "site": str(compiled.source.directory.resolve())}
    return _run(compiled, tree, mode="apply", source=source, **kw)


@click.command(epilog=EXIT_HELP)
@site_argument
@click.option("--to", "target", required=True, metavar="RUN_ID|GIT_REF",
              help="a run in runs/<site>/ (its pushed tree) or a git commit (the site rendered at that commit)")
@_options
def rollback(site: Path, target: str, **kw: Any) -> int:
    """Re-apply a known-good tree of SITE through the same pre-flight, order and health gates."""
    from ..apply.rollback import tree_from_git, tree_from_run

    compiled = compile_site(site)
    runs_root = (kw["runs_dir"] or project_runs(compiled.source.directory)) / compiled.plan.name
    tree = tree_from_run(runs_root, target)
    if tree is not None:
        source = {"kind": "run", "run_id": target}
    else:
        tree, commit = tree_from_git(compiled.source.directory, target)
        source = {"kind": "git", "ref": target, "commit": commit}
    return _run(compiled, tree, mode="rollback", source=source, **kw)
