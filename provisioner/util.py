"""Helpers shared by several pipeline stages (load, validate, ipam, plan, render, capacity).

Standard library only, and nothing from ``provisioner``: any module may import this one without creating
an import cycle. Keep it that way (tests/unit/test_util.py checks); a helper that needs the model belongs
next to the model.
"""

from __future__ import annotations

import difflib
import functools
import gc
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

# A field path into a YAML document or the model: ("dcs", 0, "racks", 3, "asn").
Loc = tuple[str | int, ...]
# What a cross-object rule of the site yields (validate, etcd_rules, egress_rules, etcd_timing): the field
# path of the offending value and the message; load.py turns the path into file:line. Not a check finding
# (check.Finding), which is about a valid site's plan.
Violation = tuple[Loc, str]

P = ParamSpec("P")
R = TypeVar("R")


def dotted(loc: Loc) -> str:
    """``("dcs", 0, "racks", 3, "asn")`` -> ``dcs[0].racks[3].asn``: the field path users see."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def gc_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with the cyclic garbage collector paused (and resumed after, if it was on).

    Loading, allocating, planning and rendering build hundreds of thousands of acyclic objects; every
    allocation burst triggers collections that re-walk the whole growing heap (30% of the time of
    loading a 10 000-node site). Nothing they build is cyclic garbage, so pausing changes no result.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper


def did_you_mean(word: str, choices: Iterable[str], listing: bool = False) -> str:
    """``; did you mean 'subnet'?`` (difflib), and with ``listing`` the choices when there are few."""
    ordered = sorted(choices)
    close = difflib.get_close_matches(word, ordered, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if listing and ordered and len(ordered) <= 12:
        hint += f" (known: {', '.join(ordered)})"
    return hint
