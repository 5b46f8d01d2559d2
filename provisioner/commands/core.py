"""validate, render, plan, release: the commands of the render pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..diff import TreeDiff, diff_trees, unified
from ..errors import EnvironmentFailure, InputError, os_error_text
from ..ipam import dump_lock, read_lock
from ..ipam import release as release_node
from ..load import load_site, locate
from ..pipeline import Compiled, compile_site, default_out
from ..render import render as render_plan
from ..report import details, format_option, md_table, text_table, to_json
from ..write import check_replaceable, read_tree, site_lock, stage_tree, write_file_atomic

site_argument = click.argument("site", type=click.Path(path_type=Path))
out_option = click.option("--out", type=click.Path(path_type=Path), default=None,
                          help="output directory [default: rendered/<site>/ beside inventories/]")
allow_moves_option = click.option(
    "--allow-moves", is_flag=True,
    help="let locked allocations the lock lacks but the rendered tree or git HEAD has be given new values "
         "(after a lost or replaced lock, or a node moved to another rack); shown as moves")

__all__ = ["default_out", "plan", "release", "render", "validate"]


def current_lock_text(compiled: Compiled) -> str | None:
    path = compiled.source.lock_file
    try:
        # Bytes, not read_text(): universal newlines would hide a CRLF lock that render rewrites.
        return path.read_bytes().decode("utf-8") if path.exists() else None
    except (OSError, UnicodeDecodeError):
        return None


def summary_line(compiled: Compiled) -> str:
    p = compiled.plan
    return (f"site {p.name}: {len(p.dcs)} DCs, {len(p.tors)} racks, {len(p.nodes)} nodes, "
            f"{len(p.spines)} spines, {len(p.vms)} VMs, {len(p.sessions)} BGP sessions")


@click.command()
@site_argument
@allow_moves_option
def validate(site: Path, allow_moves: bool) -> int:
    """Load and validate SITE: every error at once, with file:line and field. Writes nothing."""
    compiled = compile_site(site, allow_moves=allow_moves)
    click.echo(f"ok: {summary_line(compiled)}")
    if compiled.plan.change.moves:
        click.echo(f"{len(compiled.plan.change.moves)} locked allocations would move (--allow-moves); "
                   "`provisioner plan --allow-moves` lists them")
    return 0


@click.command()
@site_argument
@out_option
@allow_moves_option
def render(site: Path, out: Path | None, allow_moves: bool) -> int:
    """Allocate, render SITE and swap the tree in atomically; update the lock file if needed.

    Order: the new tree is staged, the lock is written (fsync, rename), then the tree is swapped in. A
    failure before the lock is written changes nothing; after it, the lock is new and the tree old, which
    the next render repairs (the tree is derived from the lock, never the reverse).
    """
    with site_lock(locate(site).directory):
        compiled = compile_site(site, allow_moves=allow_moves, out=out)
        artifacts = render_plan(compiled.plan)
        target = out or default_out(compiled.source)
        check_replaceable(target)  # bad --out is bad input: refuse before anything is written
        lock_path = compiled.source.lock_file
        lock_text = dump_lock(compiled.plan.name, compiled.plan.allocations)
        current_lock = current_lock_text(compiled)
        try:
            staged = stage_tree(target, artifacts, read_tree(target), record=lock_text)
        except OSError as exc:
            raise EnvironmentFailure(f"cannot write the rendered tree {target}: {os_error_text(exc)}; nothing "
                                     f"was changed (the tree and {lock_path.name} are as they were)") from None
        try:
            if lock_text != current_lock:
                write_file_atomic(lock_path, lock_text)
        except OSError as exc:
            staged.abort()
            raise EnvironmentFailure(f"cannot write {lock_path}: {os_error_text(exc)}; nothing was changed "
                                     "(the tree and the lock are as they were)") from None
        except BaseException:
            staged.abort()
            raise
        try:
            staged.commit()
        except OSError as exc:
            raise EnvironmentFailure(
                f"{lock_path.name} was written but the rendered tree {target} could not be swapped in: "
                f"{os_error_text(exc)}; the previous tree is still there: fix the cause and run "
                "`provisioner render` again (it re-renders the tree from the lock)") from None
        written = staged.written
    change = compiled.plan.change
    click.echo(f"{summary_line(compiled)}")
    click.echo(f"rendered {len(artifacts)} files into {target} ({written} written, "
               f"{len(artifacts) - written} unchanged)")
    if lock_text != current_lock:
        click.echo(f"lock file {compiled.source.lock_file} updated: {len(change.added_pods)} pod prefixes, "
                   f"{len(change.added_addresses)} node addresses, {len(change.added_links)} fabric links "
                   f"added; {len(change.freed_links)} fabric links freed")
    if change.moves:
        click.echo(f"moved (--allow-moves): {len(change.moves)} locked allocations")
        for move in change.moves:
            click.echo(f"  {move}")
    if change.orphaned:
        click.echo(f"orphaned (still reserved until `provisioner release`): {', '.join(change.orphaned)}")
    return 0


def plan_data(compiled: Compiled, tree: TreeDiff, target: Path) -> dict[str, Any]:
    change = compiled.plan.change
    allocs = compiled.plan.allocations
    current = current_lock_text(compiled)
    rewrite = dump_lock(compiled.plan.name, allocs) != current
    return {
        "site": compiled.plan.name,
        "summary": summary_line(compiled),
        "output": str(target),
        "allocations": {
            "pod_cidrs_added": {h: str(allocs.pod_cidrs[h]) for h in change.added_pods},
            "node_addresses_added": {h: str(allocs.node_addresses[h]) for h in change.added_addresses},
            "fabric_links_added": {k: str(allocs.fabric_links[k]) for k in change.added_links},
            "fabric_links_freed": list(change.freed_links),
            "orphaned": {h: str(allocs.pod_cidrs[h]) for h in change.orphaned},
            "moves": [{"section": m.section, "key": m.key, "old": m.old, "new": m.new, "was_in": m.source}
                      for m in change.moves],
            # render would write the lock (new entries, or only its form: order, quoting, version...)
            "lock_rewritten": rewrite,
        },
        "files": {"added": list(tree.added), "removed": list(tree.removed), "changed": list(tree.changed)},
        "changes": bool(change.lock_changes or rewrite or not tree.empty),
    }


def plan_text(data: dict[str, Any]) -> str:
    a, f = data["allocations"], data["files"]
    lines = [f"plan for {data['summary']}"]
    rows = [(h, c) for h, c in a["pod_cidrs_added"].items()]
    lines.append(f"allocations: {len(a['pod_cidrs_added'])} pod prefixes, {len(a['node_addresses_added'])} "
                 f"node addresses, {len(a['fabric_links_added'])} fabric links to add; "
                 f"{len(a['fabric_links_freed'])} fabric links to free")
    if rows:
        lines.append(text_table(("node", "pod prefix"), rows))
    if a["moves"]:
        lines.append(f"MOVES (--allow-moves): {len(a['moves'])} locked allocations get new values")
        lines.append(text_table(("section", "key", "old", "new", "was in"),
                                [(m["section"], m["key"], m["old"], m["new"], m["was_in"]) for m in a["moves"]]))
    if a["lock_rewritten"] and not any(a[k] for k in ("pod_cidrs_added", "node_addresses_added",
                                                        "fabric_links_added", "fabric_links_freed", "moves")):
        lines.append("lock file: would be rewritten in its canonical form (same allocations)")
    if a["orphaned"]:
        lines.append("orphaned (reserved until `provisioner release`): "
                     + ", ".join(f"{h} {c}" for h, c in a["orphaned"].items()))
    lines.append(f"files in {data['output']}: {len(f['added'])} to add, {len(f['removed'])} to remove, "
                 f"{len(f['changed'])} to change")
    for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        lines.extend(f"  {mark} {p}" for p in f[key])
    if data.get("tolerance"):
        lines.append("etcd fault tolerance:")
        lines.extend(f"  {t}" for t in data["tolerance"])
    lines.append("no changes" if not data["changes"] else "changes pending: run `provisioner render`")
    return "\n".join(lines) + "\n"


def plan_markdown(data: dict[str, Any], diff_text: str) -> str:
    a, f = data["allocations"], data["files"]
    out = [f"### provisioner plan: `{data['site']}`", "", data["summary"], ""]
    out.append(md_table(("what", "count"), [
        ("pod prefixes allocated", len(a["pod_cidrs_added"])),
        ("node addresses assigned", len(a["node_addresses_added"])),
        ("fabric links added", len(a["fabric_links_added"])),
        ("fabric links freed", len(a["fabric_links_freed"])),
        ("orphaned nodes (reserved)", len(a["orphaned"])),
        ("locked allocations moved", len(a["moves"])),
        ("lock file rewritten", "yes" if a["lock_rewritten"] else "no"),
        ("files added", len(f["added"])),
        ("files removed", len(f["removed"])),
        ("files changed", len(f["changed"])),
    ]))
    if a["moves"]:
        out += ["", f"**{len(a['moves'])} locked allocations move (--allow-moves)**", "",
                md_table(("section", "key", "old", "new"),
                         [(m["section"], m["key"], m["old"], m["new"]) for m in a["moves"]])]
    if a["pod_cidrs_added"]:
        out += ["", details(f"{len(a['pod_cidrs_added'])} new pod prefixes",
                            md_table(("node", "pod prefix"), list(a["pod_cidrs_added"].items())))]
    touched = [*(f"+ {p}" for p in f["added"]), *(f"- {p}" for p in f["removed"]),
               *(f"~ {p}" for p in f["changed"])]
    if touched:
        out += ["", details(f"{len(touched)} files touched", "```\n" + "\n".join(touched) + "\n```")]
    if data.get("tolerance"):
        out += ["", "etcd fault tolerance:", ""] + [f"- {t}" for t in data["tolerance"]]
    if diff_text:
        out += ["", details("file diff", "```diff\n" + diff_text + "```")]
    if not data["changes"]:
        out += ["", "No changes."]
    return "\n".join(out) + "\n"


def plan_tolerance(compiled: Compiled) -> list[str]:
    """etcd fault-tolerance statements (provisioner/fault_tolerance.py), when that module is present."""
    try:
        from ..fault_tolerance import tolerance_lines
    except ImportError:  # pragma: no cover - optional module
        return []
    return tolerance_lines(compiled.plan)


@click.command()
@site_argument
@out_option
@format_option
@click.option("--diff", "show_diff", is_flag=True, help="show a unified diff of every changed file")
@click.option("--exit-code", is_flag=True, help="exit 1 when a render would change anything")
@click.option("--against", "against", metavar="REF", default=None,
              help="compare with a base: a git ref (e.g. origin/main) or a directory holding another copy of "
                   "the site; prints a semantic summary, check findings and the file diff (markdown: a PR comment)")
@click.option("--details-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="with --against: also write the complete review (comment, JSON, diff, every list) into DIR, "
                   "for a CI artifact the comment links to")
@click.option("--details-url", default=None, metavar="URL",
              help="with --against: where the --details-dir files are published; the comment links there")
@allow_moves_option
def plan(site: Path, out: Path | None, fmt: str, show_diff: bool, exit_code: bool, against: str | None,
         allow_moves: bool = False, details_dir: Path | None = None, details_url: str | None = None) -> int:
    """Show what a render of SITE would change: allocations and files. Writes nothing.

    With --against REF: what the change means against a base (nodes, racks, /24s, sessions, anycast
    announcers, etcd membership, files) plus the check findings of the new side; --exit-code then exits 1
    when anything changed or an unwaived check error remains.
    """
    if against is not None:
        from ..against import plan_against

        text, changed, errors = plan_against(site, against, fmt, show_diff, details_dir, details_url,
                                             summary_line, plan_tolerance)
        click.echo(text, nl=False)
        return 1 if exit_code and (changed or errors) else 0
    if details_dir is not None or details_url is not None:
        raise InputError("--details-dir and --details-url only apply with --against")
    compiled = compile_site(site, allow_moves=allow_moves, out=out)
    artifacts = render_plan(compiled.plan)
    target = out or default_out(compiled.source)
    current = read_tree(target)
    tree = diff_trees(current, artifacts)
    data = plan_data(compiled, tree, target)
    data["tolerance"] = plan_tolerance(compiled)
    diff_text = unified(current, artifacts, tree.touched) if show_diff else ""
    if fmt == "json":
        if show_diff:
            data["diff"] = diff_text
        click.echo(to_json(data), nl=False)
    elif fmt == "markdown":
        click.echo(plan_markdown(data, diff_text), nl=False)
    else:
        click.echo(plan_text(data), nl=False)
        if diff_text:
            click.echo(diff_text, nl=False)
    return 1 if exit_code and data["changes"] else 0


@click.command()
@site_argument
@click.argument("node")
def release(site: Path, node: str) -> int:
    """Free the pod prefix and address of NODE, which must already be gone from site.yaml."""
    with site_lock(locate(site).directory):
        parsed, source, _ = load_site(site)
        lock = read_lock(source)
        freed = lock.pod_cidrs.get(node)
        new = release_node(parsed, lock, node)
        write_file_atomic(source.lock_file, dump_lock(parsed.site, new))
    click.echo(f"released {node}" + (f" (pod prefix {freed} is free again)" if freed else ""))
    return 0
