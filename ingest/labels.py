"""Class hierarchies for rolling selectivity up to generic classes (docs/science.md §12).

ImageNet ids (``n01440764``) get their WordNet 3.0 hypernym chain from a file made once from
registry packages (tools/wordnet_hierarchy.py; licence in ingest/resources/WORDNET-LICENSE).
Any other hierarchy comes from a CSV ``child,parent[,name]`` (`neurocat analyze label-hierarchy`).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from .errors import UsageError

WORDNET_FILE = files("ingest") / "resources" / "imagenet_wordnet.csv"  # package data


@lru_cache(maxsize=1)
def wordnet() -> dict[str, tuple[str | None, str, int | None]]:
    """WordNet id -> (first hypernym or None at the root, first lemma, ImageNet-1k class index or None)."""
    with open(WORDNET_FILE, newline="") as f:
        return {r["wnid"]: (r["parent"] or None, r["name"], int(r["imagenet_index"]) if r["imagenet_index"] else None)
                for r in csv.DictReader(f)}


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in the order of the classifiers' outputs."""
    found = {index: wnid for wnid, (_, _, index) in wordnet().items() if index is not None}
    return [found[i] for i in range(len(found))]


def read_parents(path: str | Path) -> tuple[dict[str, str | None], dict[str, str]]:
    """A CSV with columns child, parent (empty at a root) and optionally name."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UsageError(f"cannot read the hierarchy file {path}: {exc}") from exc
    if not rows or not {"child", "parent"} <= set(rows[0]):
        raise UsageError(f"{path} needs the columns child,parent[,name]")
    parents = {r["child"]: r["parent"] or None for r in rows}
    names = {r["child"]: r["name"] for r in rows if r.get("name")}
    return parents, names


def hierarchy_rows(classes: list[str], parents: dict[str, str | None] | None = None,
                   names: dict[str, str] | None = None) -> list[tuple[str, str, int, str]]:
    """(label, ancestor, depth, name) for every class: itself at depth 0, then its parents up to a root.

    Without ``parents`` the WordNet tree is used for WordNet ids; a class unknown to the tree is
    its own only ancestor.
    """
    if parents is None:
        parents = {wnid: parent for wnid, (parent, _, _) in wordnet().items()}
        names = {wnid: name for wnid, (_, name, _) in wordnet().items()}
    names = names or {}
    rows = []
    for label in classes:
        node, depth, seen = label, 0, set()
        while node is not None:
            if node in seen:
                raise UsageError(f"the class hierarchy has a cycle through {node!r}")
            seen.add(node)
            rows.append((label, node, depth, names.get(node, node)))
            node, depth = parents.get(node), depth + 1
    return rows
