"""Load ``site.yaml`` into a validated :class:`Site`, reporting every problem at once.

YAML is composed (libyaml when available) so that each value keeps its line; pydantic errors and the
cross-object rules of ``validate.py`` are mapped back to ``file:line`` and a dotted field path.
"""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError, Problem, cut, short
from .model import Site
from .util import Loc, did_you_mean, dotted, gc_paused
from .validate import site_problems

try:  # libyaml is an order of magnitude faster on large sites
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

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
        obj, rest = named(self.data, loc)
        return Problem(file=self.file, line=self.line_of(loc), field=dotted(rest), message=message, obj=obj)

    def describe(self, loc: Loc) -> str:
        """``rack dc2-r11 (line 171)``: how a message refers to another object of the same file."""
        obj, rest = named(self.data, loc)
        what = obj if obj else dotted(rest)
        line = self.line_of(loc)
        return f"{what} (line {line})" if line else what


# list key -> (what the items are called, the key holding their name)
_NAMED_LISTS = {
    "dcs": ("dc", "name"), "racks": ("rack", "name"), "spines": ("spine", "name"), "nodes": ("node", "hostname"),
    "node_groups": ("node group", "name_pattern"), "pod_pools": ("pod pool", "name"),
    "control_plane": ("control-plane VM", "name"), "etcd": ("etcd VM", "name"),
    "etcd_events": ("events etcd VM", "name"), "upstreams": ("upstream", "name"),
}
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9{}:._-]{1,64}")


def named(data: Any, loc: Loc) -> tuple[str, Loc]:
    """Split ``loc`` into the deepest named object it passes and the path inside it.

    ``("dcs", 1, "racks", 11, "asn")`` -> ``("rack dc2-r12", ("asn",))``; no named object -> ``("", loc)``.
    """
    obj, start = "", 0
    cur = data
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and not isinstance(part, int):
            if i == 1 and loc[0] == "hardware" and part in cur:
                obj, start = f"hardware {_name(part)}", 2
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            prev = loc[i - 1] if i > 0 else None
            kind = _NAMED_LISTS.get(prev) if isinstance(prev, str) else None
            if kind is not None and isinstance(cur, dict) and isinstance(cur.get(kind[1]), str):
                obj, start = f"{kind[0]} {_name(cur[kind[1]])}", i + 1
        else:
            break
    return obj, tuple(loc[start:])


def _name(value: object) -> str:
    return value if isinstance(value, str) and _PRINTABLE_NAME.fullmatch(value) else short(value, 40)


def read_input(path: Path) -> str:
    """A reviewed input file as text; unreadable, a directory or not UTF-8 is bad input (exit 2)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(str(path), None, "", f"cannot read: {exc}")]) from None


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse one YAML document; syntax errors, duplicate keys, aliases and values the YAML constructor
    cannot build (``!!int abc``, ``2026-02-29``, complex keys) are input errors with their line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError([Problem(file, 1, "", "file is empty")])
        problems: list[Problem] = []
        lines: dict[Loc, int] = {}
        _walk(node, (), lines, problems, file, set(), 0)
        if problems:
            raise InputError(problems)
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError:
            raise
        except Exception as exc:
            raise InputError([_unconstructible(node, file, exc)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        raise InputError([Problem(file, line, "", f"YAML syntax error: {cut(what, 300)}")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(file, None, "", f"YAML error: {cut(str(exc), 300)}")]) from None
    finally:
        loader.dispose()
    return YamlDoc(data=data, lines=lines, file=file)


# Deeper than any site model; a hostile [[[[...]]]] must not exhaust the interpreter's stack.
MAX_DEPTH = 64


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], file: str,
          seen: set[int], depth: int) -> None:
    if depth > MAX_DEPTH:
        problems.append(Problem(file, node.start_mark.line + 1, dotted(loc),
                                f"nested deeper than {MAX_DEPTH} levels"))
        return
    if id(node) in seen:
        problems.append(Problem(file, node.start_mark.line + 1, dotted(loc),
                                "YAML anchors/aliases are not supported; write the value out"))
        return
    seen.add(id(node))
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(file, key_node.start_mark.line + 1, dotted(loc),
                                        "a key must be a plain name, not a list or mapping (YAML '? ' keys "
                                        "are not supported)"))
                continue
            key = key_node.value
            if key == "<<":
                problems.append(Problem(file, key_node.start_mark.line + 1, dotted(loc),
                                        "YAML merge keys are not supported"))
                continue
            if key in keys:
                problems.append(Problem(file, key_node.start_mark.line + 1, dotted((*loc, key)),
                                        f"duplicate key {short(key)}"))
            keys.add(key)
            child = (*loc, key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, problems, file, seen, depth + 1)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines, problems, file, seen, depth + 1)


def _unconstructible(root: yaml.Node, file: str, exc: BaseException) -> Problem:
    """The first scalar YAML cannot turn into a value (``!!int abc``, ``2026-02-29``), with its line."""
    constructor = yaml.SafeLoader("")
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack.extend((v, (*loc, k.value)) for k, v in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*loc, i)) for i, v in reversed(list(enumerate(node.value))))
        else:
            try:
                constructor.construct_object(node, deep=True)
            except Exception as bad:
                tag = node.tag.rsplit(":", 1)[-1]
                what = "date (YYYY-MM-DD)" if tag == "timestamp" else tag
                return Problem(file, node.start_mark.line + 1, dotted(loc),
                               f"{short(node.value)} is not a valid {what} ({cut(str(bad), 120)})")
    return Problem(file, root.start_mark.line + 1, "", f"YAML value cannot be read ({cut(str(exc), 120)})")


M = TypeVar("M", bound=BaseModel)


def validate_file(doc: YamlDoc, model: type[M]) -> M:
    """``doc`` as a ``model`` (check.yaml, waivers.yaml), or every schema problem at once with file:line:
    the same messages and the same path as site.yaml's schema errors."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise InputError(_pydantic_problems(doc, exc, model)) from None


def _pydantic_problems(doc: YamlDoc, exc: ValidationError, model: type[BaseModel] = Site) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            keys = _keys_at(loc[:-1], model)
            message = f"unknown key {short(loc[-1])}{did_you_mean(str(loc[-1]), keys, listing=True)}"
        elif err["type"] == "missing":
            message = f"required key {short(loc[-1])} is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        elif err["type"].endswith("_type"):
            got = f"got {type(err.get('input')).__name__} {short(err.get('input'))}"
            # "Input should be a valid dictionary or instance of Rack": the class name means nothing in YAML
            message = f"must be a mapping ({got})" if err["type"] == "model_type" else f"{message} ({got})"
        problems.append(doc.problem(loc, message))
    return problems


def _unwrap(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    return tp


def _keys_at(loc: Loc, model: type[BaseModel] = Site) -> list[str]:
    """The keys ``model`` allows in the mapping at ``loc`` (for "did you mean")."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if origin is list:
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[str(part)].annotation
        else:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _partial_site(data: dict[str, Any], exc: ValidationError) -> tuple[Site | None, Callable[[Loc], Loc], set[str]]:
    """The site without the objects that failed structural validation, so cross-object rules can run too.

    Bad leaves are dropped (a default takes their place); when that leaves a required key missing, the
    enclosing list item (node, rack, VM...) is dropped. Returns the partial site (or None when a top-level
    part is broken), a map from its locations back to the file's, and the names of what was dropped
    (a reference to a dropped rack is not reported as a second error).
    """
    work = copy.deepcopy(data)
    deleted: dict[Loc, list[int]] = {}
    pruned: set[str] = set()

    def original(loc: Loc) -> Loc:
        out: list[str | int] = []
        for part in loc:
            if isinstance(part, int):
                for d in deleted.get(tuple(out), ()):
                    if d <= part:
                        part += 1
            out.append(part)
        return tuple(out)

    def remove(loc: Loc) -> bool:
        parent: Any = work
        for part in loc[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                return False
        last = loc[-1]
        if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
            _names_in(parent[last], pruned)
            if len(loc) >= 2 and isinstance(loc[-2], str):
                pruned.add(f"<{loc[-2]}>")  # its kind: references to that kind may point at the dropped one
            full = original(loc)
            deleted.setdefault(full[:-1], []).append(int(full[-1]))  # original() keeps a list index an int
            deleted[full[:-1]].sort()
            del parent[last]
            return True
        if isinstance(parent, dict) and last in parent:
            if loc[:1] == ("hardware",) and len(loc) == 2:
                pruned.update((str(last), "<hardware>"))
            _names_in(parent[last], pruned)
            del parent[last]
            return True
        return False

    tried: set[Loc] = set()
    for _round in range(6):
        targets: list[Loc] = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, int) or p in _loc_keys(work, err["loc"]))
            if err["type"] != "missing" and loc not in tried and loc:
                targets.append(loc)
                continue
            # Escalate to the enclosing list item (or hardware profile).
            for k in range(len(loc) - 1, 0, -1):
                if isinstance(loc[k], int) or (k == 1 and loc[0] == "hardware"):
                    targets.append(loc[:k + 1])
                    break
            else:
                return None, original, pruned
        tried.update(targets)
        # Deepest first, highest index first: removing one never shifts another target.
        for loc in sorted(set(targets), key=lambda t: (len(t), t[-1] if isinstance(t[-1], int) else -1),
                          reverse=True):
            if not remove(loc):
                return None, original, pruned
        try:
            return Site.model_validate(work), original, pruned
        except ValidationError as again:
            exc = again
    return None, original, pruned


_REFERENCE_PREFIXES = {"dcs": "data centre '", "racks": "rack '", "hardware": "hardware profile '"}


def _loc_keys(data: Any, loc: tuple[Any, ...]) -> set[str]:
    """The string parts of a pydantic location that are real keys (not union tags like 'function-after[...]')."""
    keys: set[str] = set()
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            keys.add(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        elif isinstance(part, str) and isinstance(cur, dict):
            keys.add(part)  # a missing or unknown key: still part of the path
            cur = None
    return keys


def _names_in(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for key in ("name", "hostname", "name_pattern"):
            if isinstance(value.get(key), str):
                out.add(value[key])
        for v in value.values():
            _names_in(v, out)
    elif isinstance(value, list):
        for v in value:
            _names_in(v, out)


@gc_paused
def load_site(path: str | Path) -> tuple[Site, SiteSource, YamlDoc]:
    """Read, parse and validate a site. Raises :class:`InputError` with every problem found.

    Structural (schema) and cross-object problems are reported together: when the schema rejects part
    of the file, the cross-object rules still run over the rest.
    """
    source = locate(path)
    file = str(source.site_file)
    text = read_input(source.site_file)
    if not text.strip():
        raise InputError([Problem(file, 1, "", "file is empty")])
    doc = parse_yaml(text, file)
    if not isinstance(doc.data, dict):
        raise InputError([Problem(file, 1, "", "the top level must be a mapping (site:, dcs:, ...)")])
    try:
        site: Site | None = Site.model_validate(doc.data)
        problems: list[Problem] = []
        original: Callable[[Loc], Loc] = tuple
        pruned: set[str] = set()
    except ValidationError as exc:
        problems = _pydantic_problems(doc, exc)
        site, original, pruned = _partial_site(doc.data, exc)
    if site is not None:
        quoted = {repr(n) for n in pruned}
        # A reference to a kind of object of which one was dropped may mean the dropped one (its name was
        # the broken value): report it once the schema errors are fixed, not now.
        unsure = tuple(prefix for kind, prefix in _REFERENCE_PREFIXES.items() if f"<{kind}>" in pruned)
        for loc, message in site_problems(site, lambda loc: doc.describe(original(loc)),
                                          lambda loc: doc.line_of(original(loc))):
            if any(q in message for q in quoted):
                continue
            if message.startswith(unsure) and ("does not exist" in message or "is not defined" in message):
                continue
            problems.append(doc.problem(original(loc), message))
    if problems:
        raise InputError(problems)
    assert site is not None
    return site, source, doc
