"""Plan -> Artifacts: ``{relative path: text}``, deterministic and sorted.

Templates are found by convention: ``templates/<scope>/<file>.j2`` is rendered once per object of
that scope into the directory the scope names, with the object in the context. Adding a file to
every node is adding a template; no code changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import jinja2

from . import jsonenc
from .errors import InputError
from .paths import templates_dir
from .plan import Plan
from .util import gc_paused

TEMPLATES = templates_dir()
Artifacts = dict[str, str]
Scope = Callable[[Plan], Iterable[tuple[str, dict[str, Any]]]]

# scope name -> (plan -> [(output directory, extra context)])
SCOPES: dict[str, Scope] = {
    "site": lambda plan: [("", {})],
    "node": lambda plan: ((f"nodes/{n.hostname}/", {"node": n}) for n in plan.nodes),
    "tor": lambda plan: ((f"tors/{t.name}/", {"tor": t}) for t in plan.tors),
    "spine": lambda plan: ((f"spines/{s.name}/", {"spine": s}) for s in plan.spines),
    "control-plane-vm": lambda plan: ((f"control-plane/{v.name}/", {"vm": v}) for v in plan.control_plane),
    "etcd-member": lambda plan: (
        (f"{c.name}/{m.name}/", {"cluster": c, "member": m}) for c in plan.etcd_clusters for m in c.members
    ),
}


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # Compiling the templates is ~0.1 s of every run. Jinja's per-user cache (a 0700 directory in
        # the temp dir, entries keyed by template path and invalidated by the source checksum) keeps
        # the compiled code; output is identical with or without it.
        bytecode_cache=jinja2.FileSystemBytecodeCache(),
    )
    env.filters["json"] = jsonenc.literal
    return env


def template_names(scope: str) -> list[str]:
    root = TEMPLATES / scope
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(TEMPLATES)) for p in root.rglob("*.j2"))


@gc_paused
def render(plan: Plan) -> Artifacts:
    env = environment()
    out: Artifacts = {}
    for scope, objects in SCOPES.items():
        names = template_names(scope)
        if not names:  # a broken install or checkout: never write (and swap in) an empty tree
            raise InputError(f"no templates for scope {scope!r} in {TEMPLATES / scope}: "
                             "provisioner is not installed with its templates")
        templates = [(env.get_template(n), n[len(scope) + 1: -len(".j2")]) for n in names]
        for directory, context in objects(plan):
            for template, relative in templates:
                out[directory + relative] = template.render(plan=plan, **context)
    return dict(sorted(out.items()))
