"""pki: the etcd CA and certificates of a site, into a secrets directory outside the rendered tree."""

from __future__ import annotations

from pathlib import Path

import click

from ..load import SiteSource
from ..paths import secrets_dir
from ..pipeline import compile_site


def default_secrets(source: SiteSource) -> Path:
    """``inventories/<site>`` keeps its secrets in ``secrets/<site>`` of the same project (git-ignored)."""
    return secrets_dir(source.directory)


@click.command()
@click.argument("site", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="secrets directory [default: secrets/<site>/ beside inventories/]")
@click.option("--rotate", is_flag=True, help="re-issue every certificate and key that already exists")
@click.option("--new-ca", is_flag=True, help="with --rotate: replace the CA too (needs a full restart)")
def pki(site: Path, out: Path | None, rotate: bool, new_ca: bool) -> int:
    """Create the etcd CA, server/peer certificates of every member of both etcd clusters and the
    apiserver-etcd-client certificate for SITE. Never overwrites without --rotate."""
    from .. import pki as pki_lib  # imports cryptography lazily, inside its functions

    if new_ca and not rotate:
        raise click.UsageError("--new-ca only makes sense with --rotate")
    compiled = compile_site(site)
    target = out or default_secrets(compiled.source)
    files, fresh_ca = pki_lib.issue(compiled.plan, target, rotate=rotate, new_ca=new_ca)
    pki_lib.write(target, files)
    keys = sum(1 for f in files if f.secret)
    members = sum(len(c.members) for c in compiled.plan.etcd_clusters)
    ca = "new CA" if fresh_ca else "existing CA kept"
    click.echo(f"{'rotated' if rotate else 'created'} etcd PKI of site {compiled.plan.name} in {target}: "
               f"{ca}, {members} members x (server, peer), 1 apiserver-etcd-client; "
               f"{len(files)} files, {keys} keys (mode 0600)")
    return 0
