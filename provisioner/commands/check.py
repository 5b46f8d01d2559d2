"""``provisioner check``: static checks over the Plan, waivers, text/json/markdown output."""

from __future__ import annotations

from pathlib import Path

import click

from ..check import load_options, load_waivers, run_checks, summary
from ..pipeline import compile_site
from ..report import format_option, to_json
from ..review import check_json, check_markdown, check_text

limit_options = (
    click.option("--anycast-min-announcers", type=click.IntRange(0), default=None,
                 help="minimum announcers of each anycast range in each DC  [default: 2]"),
    click.option("--min-free-per-pool", type=click.IntRange(0), default=None,
                 help="warn below this many free node prefixes in a pod pool  [default: the node count of the "
                      "largest rack drawing from the pool]"),
    click.option("--max-sessions-per-tor", type=click.IntRange(1), default=None,
                 help="maximum iBGP sessions (nodes + VMs) on one ToR  [default: 48]"),
    click.option("--max-routes-per-tor", type=click.IntRange(1), default=None,
                 help="maximum prefixes one ToR is expected to hold  [default: 16384]"),
    click.option("--ecmp-max-width", type=click.IntRange(1), default=None,
                 help="maximum-paths of the switches; must cover every anycast announcer  [default: 64]"),
)

LIMIT_KEYS = ("anycast_min_announcers", "min_free_per_pool", "max_sessions_per_tor", "max_routes_per_tor",
              "ecmp_max_width")


def with_limits(fn):
    for option in reversed(limit_options):
        fn = option(fn)
    return fn


def check_site(site: Path, limits: dict[str, int | None]):
    """compile, read check.yaml and waivers.yaml of SITE, run the checks: (compiled, options, findings)."""
    compiled = compile_site(site)
    directory = compiled.source.directory
    options = load_options(directory, limits)
    findings = run_checks(compiled.plan, options, load_waivers(directory))
    return compiled, options, findings


@click.command()
@click.argument("site", type=click.Path(path_type=Path))
@format_option
@with_limits
def check(site: Path, fmt: str, **limits: int | None) -> int:
    """Run the static checks over the Plan of SITE. Exit 1 when an unwaived error remains.

    Limits come from the flags, else from SITE/check.yaml, else the defaults. SITE/waivers.yaml accepts
    findings by ID and object, with a reason (see docs/check.md).
    """
    compiled, options, findings = check_site(site, {k: limits.get(k) for k in LIMIT_KEYS})
    name = compiled.plan.name
    if fmt == "json":
        click.echo(to_json(check_json(name, findings, options.as_dict())), nl=False)
    elif fmt == "markdown":
        click.echo(check_markdown(name, findings), nl=False)
    else:
        click.echo(check_text(name, findings), nl=False)
    return 1 if summary(findings)["errors"] else 0
