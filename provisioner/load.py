"""Load ``site.yaml`` into a validated :class:`Site`, reporting every problem at once.

YAML is composed (libyaml when available) so that each value keeps its line; pydantic errors and the
cross-object rules of ``validate.py`` are mapped back to ``file:line`` and a dotted field path.
"""

from __future__ import annotations

import functools
import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from .errors import InputError, Problem
from .model import Node, Rack, Site

try:  # libyaml is an order of magnitude faster on large sites
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

Loc = tuple[str | int, ...]
F = TypeVar("F", bound=Callable[..., Any])
SITE_FILE = "site.yaml"
LOCK_FILE = "allocations.yaml"


@dataclass(frozen=True, slots=True)
class SiteSource:
    """Where a site lives on disk."""

    directory: Path
    site_file: Path
    lock_file: Path

    @property
    def name(self) -> str:
        return self.directory.name


def locate(path: str | Path) -> SiteSource:
    """Accept a site directory or its site.yaml; refuse anything else with a clear message."""
    p = Path(path)
    if p.is_file():
        directory = p.parent
        site_file = p
    elif p.is_dir():
        directory = p
        site_file = p / SITE_FILE
        if not site_file.is_file():
            raise InputError(f"{p}: not a site directory (no {SITE_FILE} in it)")
    else:
        raise InputError(f"{p}: no such site directory or file")
    return SiteSource(directory=directory, site_file=site_file, lock_file=directory / LOCK_FILE)


@dataclass(slots=True)
class YamlDoc:
    """A parsed YAML document and the line of every value in it."""

    data: Any
    lines: dict[Loc, int]
    file: str

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest part of ``loc`` that exists in the document."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(file=self.file, line=self.line_of(loc), field=dotted(loc), message=message)


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_input(path: Path) -> str:
    """A reviewed input file as text; unreadable, a directory or not UTF-8 is bad input (exit 2)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse one YAML document; syntax errors, duplicate keys and aliases are input errors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError([Problem(file, 1, "", "file is empty")])
        problems: list[Problem] = []
        lines: dict[Loc, int] = {}
        _walk(node, (), lines, problems, file, set())
        if problems:
            raise InputError(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        raise InputError([Problem(file, line, "", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(file, None, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    return YamlDoc(data=data, lines=lines, file=file)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], file: str,
          seen: set[int]) -> None:
    if id(node) in seen:
        problems.append(Problem(file, node.start_mark.line + 1, dotted(loc),
                                "YAML anchors/aliases are not supported; write the value out"))
        return
    seen.add(id(node))
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key == "<<":
                problems.append(Problem(file, key_node.start_mark.line + 1, dotted(loc),
                                        "YAML merge keys are not supported"))
                continue
            if key in keys:
                problems.append(Problem(file, key_node.start_mark.line + 1, dotted((*loc, key)),
                                        f"duplicate key {key!r}"))
            keys.add(key)
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, problems, file, seen)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines, problems, file, seen)


def gc_paused(fn: F) -> F:
    """Run ``fn`` with the cyclic garbage collector paused (and resumed after, if it was on).

    Loading, allocating, planning and rendering build hundreds of thousands of acyclic objects; every
    allocation burst triggers collections that re-walk the whole growing heap (30% of the time of
    loading a 10 000-node site). Nothing they build is cyclic garbage, so pausing changes no result.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper  # type: ignore[return-value]


_EXPANDED: dict[int, tuple[tuple[Node, Loc], ...]] = {}


def expanded_nodes(rack: Rack) -> tuple[tuple[Node, Loc], ...]:
    """``rack.expanded_nodes()``, built once per Rack object: validate, allocate and plan all walk them."""
    key = id(rack)
    nodes = _EXPANDED.get(key)
    if nodes is None:
        nodes = _EXPANDED[key] = tuple(rack.expanded_nodes())
        weakref.finalize(rack, _EXPANDED.pop, key, None)
    return nodes


def _pydantic_problems(doc: YamlDoc, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            message = f"required key {loc[-1]!r} is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        elif err["type"].endswith("_type"):
            message = f"{message} (got {type(err.get('input')).__name__} {err.get('input')!r})"
        problems.append(doc.problem(loc, message))
    return problems


@gc_paused
def load_site(path: str | Path) -> tuple[Site, SiteSource, YamlDoc]:
    """Read, parse and validate a site. Raises :class:`InputError` with every problem found."""
    from .validate import site_problems

    source = locate(path)
    file = str(source.site_file)
    text = read_input(source.site_file)
    if not text.strip():
        raise InputError([Problem(file, 1, "", "file is empty")])
    doc = parse_yaml(text, file)
    if not isinstance(doc.data, dict):
        raise InputError([Problem(file, 1, "", "the top level must be a mapping (site:, dcs:, ...)")])
    try:
        site = Site.model_validate(doc.data)
    except ValidationError as exc:
        raise InputError(_pydantic_problems(doc, exc)) from None
    problems = [doc.problem(loc, message) for loc, message in site_problems(site)]
    if problems:
        raise InputError(problems)
    return site, source, doc
