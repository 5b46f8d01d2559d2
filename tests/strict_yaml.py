"""A YAML loader that refuses duplicate mapping keys (YAML 1.2 forbids them; PyYAML keeps the last one
silently, kubectl too, ruamel.yaml and yamllint refuse them)."""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    pass


class StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(f"line {key_node.start_mark.line + 1}: key {key!r} repeats line {seen[key]}")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all_strict(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=StrictLoader))
