"""``provisioner check``: static checks over the Plan, waivers, text/json/markdown output."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from ..check import load_options, load_waivers, pending_allocations, run_checks, summary
from ..limits import SPECS, LimitSpec
from ..pipeline import compile_site
from ..report import format_option, to_json
from ..review import check_json, check_markdown, check_text

LIMIT_KEYS = tuple(spec.key for spec in SPECS)


def _limit_option(spec: LimitSpec):
    default = "" if spec.default is None else f"  [default: {spec.default}]"
    return click.option(spec.flag, spec.key, type=click.IntRange(spec.minimum), default=None,
                        help=f"{spec.help} ({spec.check_id}){default}")


def with_limits(fn):
    """One --flag per shared limit (provisioner/limits.py); check and capacity both take them."""
    for spec in reversed(SPECS):
        fn = _limit_option(spec)(fn)
    return fn


def check_site(site: Path, limits: dict[str, int | None], locked: bool = False):
    """compile, read check.yaml and waivers.yaml of SITE, run the checks: (compiled, options, findings)."""
    compiled = compile_site(site)
    directory = compiled.source.directory
    options = replace(load_options(directory, limits), locked=locked)
    findings = run_checks(compiled.plan, options, load_waivers(directory))
    return compiled, options, findings


@click.command()
@click.argument("site", type=click.Path(path_type=Path))
@format_option
@click.option("--locked", is_flag=True,
              help="fail (LCK002) when allocations.yaml lacks what a render would allocate, instead of listing "
                   "them as pending; for CI, where the lock file must be committed with the change")
@with_limits
def check(site: Path, fmt: str, locked: bool, **limits: int | None) -> int:
    """Run the static checks over the Plan of SITE. Exit 1 when an unwaived error remains.

    New nodes and links without an entry in allocations.yaml are allocated in memory, exactly as render
    would, checked, and listed as pending (with --locked they are an LCK002 error instead).
    Limits come from the flags, else from SITE/check.yaml, else the defaults. SITE/waivers.yaml accepts
    findings by ID and object, with a reason (see docs/check.md).
    """
    compiled, options, findings = check_site(site, {k: limits.get(k) for k in LIMIT_KEYS}, locked)
    name = compiled.plan.name
    pending = {} if locked else pending_allocations(compiled.plan)
    if fmt == "json":
        click.echo(to_json(check_json(name, findings, options.as_dict(), pending)), nl=False)
    elif fmt == "markdown":
        click.echo(check_markdown(name, findings, pending), nl=False)
    else:
        click.echo(check_text(name, findings, pending), nl=False)
    return 1 if summary(findings)["errors"] else 0
