"""The dependency-free helpers: util (field paths, gc pause) and jsonenc (the one JSON encoder)."""

from __future__ import annotations

import ast
import gc
import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from provisioner import jsonenc, util
from tests.conftest import ROOT


@pytest.mark.parametrize("module", ["util", "jsonenc", "paths"])
def test_leaf_modules_import_nothing_from_the_package(module: str):
    # Anything may import these without an import cycle, so they may import nothing of ours.
    tree = ast.parse((ROOT / "provisioner" / f"{module}.py").read_text())
    ours = [ast.unparse(n) for n in ast.walk(tree)
            if (isinstance(n, ast.ImportFrom) and (n.level > 0 or (n.module or "").startswith("provisioner")))
            or (isinstance(n, ast.Import) and any(a.name.startswith("provisioner") for a in n.names))]
    assert not ours


def test_dotted_is_the_field_path_users_see():
    assert util.dotted(("dcs", 0, "racks", 3, "asn")) == "dcs[0].racks[3].asn"
    assert util.dotted(("site",)) == "site"
    assert util.dotted(()) == ""
    assert util.dotted((2, "name")) == "[2].name"


def test_gc_paused_pauses_and_restores_even_on_error():
    seen = []

    @util.gc_paused
    def work(x: int) -> int:
        seen.append(gc.isenabled())
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert gc.isenabled()
    assert work(21) == 42 and seen == [False] and gc.isenabled()
    with pytest.raises(ValueError, match="negative"):
        work(-1)
    assert gc.isenabled()
    gc.disable()
    try:
        work(1)
        assert not gc.isenabled()  # a caller's own pause is left alone
    finally:
        gc.enable()
    assert work.__name__ == "work"


def test_sets_are_sorted_whatever_the_hash_order():
    words = {f"w{i:03d}" for i in range(200)}
    assert jsonenc.literal(words) == json.dumps(sorted(words))
    assert json.loads(jsonenc.document({"s": frozenset({3, 1, 2})})) == {"s": [1, 2, 3]}
    assert jsonenc.literal({1, "a"}) == jsonenc.literal({"a", 1})  # mixed types: still one order


def test_addresses_are_strings_and_unknown_types_are_refused():
    assert jsonenc.literal([IPv4Address("10.0.0.1"), IPv4Network("10.0.0.0/24"), IPv4Interface("10.0.0.1/24")]) == (
        '["10.0.0.1", "10.0.0.0/24", "10.0.0.1/24"]')
    with pytest.raises(TypeError, match="cannot serialise PosixPath"):
        jsonenc.literal(Path("/x"))


def test_literal_keeps_key_order_and_document_sorts_keys():
    data = {"b": 1, "a": (1, 2)}
    assert jsonenc.literal(data) == '{"b": 1, "a": [1, 2]}'
    assert jsonenc.document(data) == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
