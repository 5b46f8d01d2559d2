"""Compare rendered artifacts with a tree on disk: what a render would add, remove or change."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class TreeDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def touched(self) -> tuple[str, ...]:
        return tuple(sorted((*self.added, *self.removed, *self.changed)))


def diff_trees(old: dict[str, str], new: dict[str, str]) -> TreeDiff:
    old_keys, new_keys = old.keys(), new.keys()
    return TreeDiff(
        added=tuple(sorted(new_keys - old_keys)),
        removed=tuple(sorted(old_keys - new_keys)),
        changed=tuple(sorted(k for k in new_keys & old_keys if old[k] != new[k])),
    )


def unified(old: dict[str, str], new: dict[str, str], paths: tuple[str, ...]) -> str:
    chunks: list[str] = []
    for path in paths:
        a = old.get(path, "").splitlines(keepends=True)
        b = new.get(path, "").splitlines(keepends=True)
        from_name = f"a/{path}" if path in old else "/dev/null"
        to_name = f"b/{path}" if path in new else "/dev/null"
        chunks.extend(difflib.unified_diff(a, b, from_name, to_name))
    return "".join(chunks)
