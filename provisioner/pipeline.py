"""load -> allocate -> plan, the chain every command starts with.

This is also where the lock is held to what the rendered tree and git already know: a run that would
give an object other than its committed or rendered allocation stops here (exit 2) unless the command
says ``--allow-moves``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import InputError, Problem
from .ipam import Allocations, Move, allocate, moves_against, parse_lock, read_lock
from .load import SiteSource, load_site
from .plan import Plan, build_plan
from .write import ALLOCATIONS_COPY

# A refusal lists this many moves, then a count.
SHOWN_MOVES = 20


@dataclass(frozen=True)
class Compiled:
    plan: Plan
    source: SiteSource


def default_out(source: SiteSource) -> Path:
    """``inventories/<site>`` renders into ``rendered/<site>`` of the same project."""
    from .paths import rendered_dir

    return rendered_dir(source.directory)


def compile_site(path: str | Path, *, allow_moves: bool = False, out: Path | None = None) -> Compiled:
    """Everything derived from a site directory, in memory. Writes nothing.

    ``out`` is the rendered tree whose record of the allocations is checked (default: rendered/<site>).
    """
    site, source, doc = load_site(path)
    lock = read_lock(source)
    allocations, change = allocate(site, lock, str(source.lock_file), doc, allow_moves)
    if change.added_pods or change.added_addresses or change.added_links:
        # Only entries the lock lacks can move against other records: checked only when some were added.
        moves = _moves_against_records(source, out or default_out(source), lock, allocations)
        if moves and not allow_moves:
            raise InputError(_refusal(source, moves))
        change = replace(change, moves=change.moves + tuple(moves))
    return Compiled(plan=build_plan(site, allocations, change), source=source)


def _moves_against_records(source: SiteSource, tree: Path, lock: Allocations, new: Allocations) -> list[Move]:
    seen: set[tuple[str, str]] = set()
    out: list[Move] = []
    for text, where in (_tree_record(tree), _git_record(source)):
        if text is None:
            continue
        try:
            evidence = parse_lock(text, where)
        except InputError:
            continue  # an unreadable record proves nothing; the lock itself was valid
        for move in moves_against(evidence, lock, new, where):
            if (move.section, move.key) not in seen:
                seen.add((move.section, move.key))
                out.append(move)
    return out


def _tree_record(tree: Path) -> tuple[str | None, str]:
    path = tree / ALLOCATIONS_COPY
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError):
        return None, str(path)


def _git_record(source: SiteSource) -> tuple[str | None, str]:
    """The lock as committed at HEAD, when the site is in a git work tree and the lock is tracked."""
    where = f"git HEAD:{source.lock_file.name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["LC_ALL"] = "C"
    try:
        proc = subprocess.run(["git", "show", f"HEAD:./{source.lock_file.name}"], cwd=source.directory,
                              capture_output=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None, where
    if proc.returncode != 0:
        return None, where
    try:
        return proc.stdout.decode("utf-8"), where
    except UnicodeDecodeError:
        return None, where


def _refusal(source: SiteSource, moves: list[Move]) -> list[Problem]:
    lock = str(source.lock_file)
    records = sorted({m.source for m in moves})
    head = Problem(lock, None, "", (
        f"{len(moves)} locked allocation{'s' if len(moves) != 1 else ''} would move: the lock lacks entries "
        f"that {' and '.join(records)} still {'have' if len(records) > 1 else 'has'} (was the lock truncated, "
        "emptied or replaced?). Restore it (e.g. `git checkout -- "
        f"{source.lock_file.name}`), or, if these moves are intended, re-run with --allow-moves "
        "(`provisioner plan --allow-moves` shows them first)"
        + (f"; the first {SHOWN_MOVES} are listed" if len(moves) > SHOWN_MOVES else "")))
    shown = [Problem(lock, None, f"{m.section}.{m.key}", f"{m.old} would become {m.new}")
             for m in sorted(moves, key=lambda m: (m.section, m.key))[:SHOWN_MOVES]]
    return [head, *shown]
