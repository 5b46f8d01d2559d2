"""The one JSON encoder: addresses as strings, sets (and frozensets) as sorted lists.

Used for the ``json`` filter of the templates (a value's JSON literal, keys in the order given) and for
every ``--format json`` report (indented, keys sorted). A set never leaks hash order into an artifact
or a report. Imports nothing from ``provisioner``.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any


def default(value: Any) -> Any:
    """What ``json`` cannot serialise by itself; anything else is a bug, not an output."""
    if isinstance(value, IPv4Address | IPv4Network | IPv4Interface):
        return str(value)
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:  # mixed types: still one stable order
            return sorted(value, key=repr)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# What json.dumps(value, default=default) builds on every call, built once (the filter runs per node).
_LITERAL = json.JSONEncoder(default=default, sort_keys=False)


def literal(value: Any) -> str:
    """The JSON (and so YAML) literal of a value: the only way free text enters a structured file."""
    return _LITERAL.encode(value)


def document(value: Any) -> str:
    """A JSON document for tools: indented, keys sorted, one trailing newline."""
    return json.dumps(value, indent=2, sort_keys=True, default=default) + "\n"
