"""The limits of a rate-limit service configuration in envoyproxy/ratelimit's format (e.g.
envoy/ratelimit/config/mcp.yaml), and which limit a request descriptor gets.

The format: a `domain`, and a tree of `descriptors`, each with a `key`, an optional `value`, an
optional `rate_limit` ({unit, requests_per_unit}) and nested `descriptors`. A request descriptor
(a list of key/value entries) is matched entry by entry down the tree, a node with the entry's
key and value first, else one with the key and no value (which matches any value). The limit is
that of the node the last entry reached; none if an entry finds no node. Only these fields are
read: any other (envoyproxy/ratelimit's shadow_mode, unlimited, replaces, ...) is refused rather
than ignored, so a configuration never means more than the stand-in does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_DESCRIPTOR_FIELDS = {"key", "value", "rate_limit", "descriptors"}
_LIMIT_FIELDS = {"unit", "requests_per_unit"}


class BadLimits(ValueError):
    pass


@dataclass(frozen=True)
class Limit:
    requests_per_unit: int
    unit: str  # a key of UNIT_SECONDS

    @property
    def window_seconds(self) -> int:
        return UNIT_SECONDS[self.unit]


@dataclass
class LimitNode:
    limit: Limit | None = None
    # (key, value) -> node; value None: any value.
    children: dict[tuple[str, str | None], LimitNode] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    domain: str
    root: LimitNode

    def limit_for(self, entries: list[tuple[str, str]]) -> Limit | None:
        node = self.root
        for key, value in entries:
            child = node.children.get((key, value)) or node.children.get((key, None))
            if child is None:
                return None
            node = child
        return node.limit


def _unknown(where: str, document: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(document) - known)
    if extra:
        raise BadLimits(f"{where}: fields the stand-in does not implement: {extra}")


def _limit(where: str, document: Any) -> Limit:
    if not isinstance(document, dict):
        raise BadLimits(f"{where}: rate_limit must be a mapping")
    _unknown(where, document, _LIMIT_FIELDS)
    unit, count = str(document.get("unit", "")).lower(), document.get("requests_per_unit")
    if unit not in UNIT_SECONDS or not isinstance(count, int) or count < 0:
        raise BadLimits(f"{where}: needs a unit of {sorted(UNIT_SECONDS)} and a requests_per_unit >= 0")
    return Limit(count, unit)


def _add_descriptors(where: str, parent: LimitNode, documents: Any) -> None:
    if not isinstance(documents, list):
        raise BadLimits(f"{where}: descriptors must be a list")
    for index, document in enumerate(documents):
        here = f"{where}[{index}]"
        if not isinstance(document, dict) or not isinstance(document.get("key"), str):
            raise BadLimits(f"{here}: a descriptor needs a key")
        _unknown(here, document, _DESCRIPTOR_FIELDS)
        value = document.get("value")
        node_key = (document["key"], None if value is None else str(value))
        if node_key in parent.children:
            raise BadLimits(f"{here}: duplicate descriptor {node_key}")
        node = LimitNode(limit=_limit(here, document["rate_limit"]) if "rate_limit" in document else None)
        parent.children[node_key] = node
        _add_descriptors(f"{here}.descriptors", node, document.get("descriptors", []))


def parse_limits(document: Any) -> Limits:
    if not isinstance(document, dict) or not isinstance(document.get("domain"), str):
        raise BadLimits("a configuration needs a domain")
    _unknown("configuration", document, {"domain", "descriptors"})
    root = LimitNode()
    _add_descriptors("descriptors", root, document.get("descriptors", []))
    return Limits(document["domain"], root)


def load_limits(path: Path) -> Limits:
    return parse_limits(yaml.safe_load(path.read_text()))
