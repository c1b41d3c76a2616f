"""Dedup quality against the demo archive's ground truth (`*.truth.json`).

The truth lists, per source file, occurrences of repeated items (`repeats`: the file's audio from
`start` to `end` is item `id`'s audio from `item_start` on) and of reused voices and beds that are
not repeats (`near_misses`). Then:
- two segments are a *duplicate pair* when occurrences of the same item cover, in item time, a
  common stretch of at least `min_overlap` of each segment (the rule the search links by);
- two segments are a *near-miss pair* when each is at least half covered by occurrences of the same
  voice or bed and they are not a duplicate pair;
- a predicted pair is two segments in one group. Precision and recall are over duplicate pairs
  (recall also per kind of item, and over the pairs whose copies came through another codec or
  sample rate); the near-miss rate is the share of near-miss pairs put in one group.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.truth import TruthError, read_all
from speechfm.dedup.catalog import Catalog

NEAR_MISS_COVER = 0.5  # share of a segment a reused voice or bed must cover to count


def check_occurrences(truth: dict) -> None:
    """`repeats` and `near_misses`, where present, are lists of {id, start, end} (numbers)."""
    for field in ("repeats", "near_misses"):
        occurrences = truth.get(field, [])
        if not isinstance(occurrences, list) or not all(
                isinstance(o, dict) and "id" in o and isinstance(o.get("start"), (int, float))
                and isinstance(o.get("end"), (int, float)) for o in occurrences):
            raise TruthError(f"'{field}' is not a list of {{id, start, end}}")


def read_truth(archive: Path) -> dict[str, dict]:
    """Ground truth per source file (relative path), or {} for an archive without any; files of
    another schema are skipped with a warning (`speechfm.core.truth`)."""
    truths, _ = read_all(archive, "dedup quality", check_occurrences)
    return {data["file"]: data for data in truths}


def _spans(catalog: Catalog, truth: dict[str, dict], field: str):
    """Per occurrence id: [(segment, lo, hi)] with the covered stretch in item time (repeats) or
    the covered seconds (near-misses: lo = 0, hi = covered)."""
    by_source: dict[int, list[int]] = defaultdict(list)
    for seg in range(len(catalog)):
        by_source[int(catalog.source[seg])].append(seg)
    spans: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for src, segs in by_source.items():
        occurrences = truth.get(catalog.sources[src], {}).get(field, [])
        for seg in segs:
            s, e = float(catalog.start[seg]), float(catalog.end[seg])
            covered: dict[str, float] = defaultdict(float)
            for occ in occurrences:
                lo, hi = max(s, occ["start"]), min(e, occ["end"])
                if hi <= lo:
                    continue
                if field == "repeats":
                    shift = occ.get("item_start", 0.0) - occ["start"]
                    spans[occ["id"]].append((seg, lo + shift, hi + shift))
                else:
                    covered[occ["id"]] += hi - lo
            for name, seconds in covered.items():
                spans[name].append((seg, 0.0, seconds))
    return spans


def true_pairs(catalog: Catalog, truth: dict[str, dict],
               min_overlap: float) -> dict[tuple[int, int], str]:
    """Duplicate pairs (a < b) by the rule in the module doc, each with the kind of item that
    makes it one (the id's prefix: ident, advert, programme)."""
    duration = catalog.end - catalog.start
    common: dict[tuple[int, int], tuple[float, str]] = {}
    for name, items in _spans(catalog, truth, "repeats").items():
        kind = name.split("-", 1)[0]
        for (x, lo1, hi1), (y, lo2, hi2) in combinations(items, 2):
            overlap = min(hi1, hi2) - max(lo1, lo2)
            key = (min(x, y), max(x, y))
            if x != y and overlap > common.get(key, (0.0, ""))[0]:
                common[key] = (overlap, kind)
    return {k: kind for k, (v, kind) in common.items()
            if v >= min_overlap * max(duration[k[0]], duration[k[1]])}


def near_miss_pairs(catalog: Catalog, truth: dict[str, dict],
                    duplicates: dict[tuple[int, int], str]) -> set[tuple[int, int]]:
    duration = catalog.end - catalog.start
    pairs = set()
    for items in _spans(catalog, truth, "near_misses").values():
        mostly = sorted({x for x, _, covered in items if covered >= NEAR_MISS_COVER * duration[x]})
        pairs.update(p for p in combinations(mostly, 2) if p not in duplicates)
    return pairs


def predicted_pairs(rep: np.ndarray) -> set[tuple[int, int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for seg in np.flatnonzero(rep >= 0).tolist():
        groups[int(rep[seg])].append(seg)
    return {p for members in groups.values() for p in combinations(sorted(members), 2)}


def evaluate(catalog: Catalog, rep: np.ndarray, truth: dict[str, dict],
             min_overlap: float) -> dict[str, Any]:
    """Pair precision, recall (also per kind of item) and the near-miss rate of the groups `rep`
    (see the module doc)."""
    true = true_pairs(catalog, truth, min_overlap)
    near = near_miss_pairs(catalog, truth, true)
    pred = predicted_pairs(rep)
    hit = pred & true.keys()
    grouped_near = len(pred & near)
    kinds = sorted(set(true.values()))
    by_kind = {k: {"pairs": sum(1 for v in true.values() if v == k),
                   "found": sum(1 for p in hit if true[p] == k)} for k in kinds}
    chain = {src: (t.get("channel", {}).get("codec"), t.get("channel", {}).get("sample_rate"))
             for src, t in truth.items()}
    of = [chain.get(name, (None, None)) for name in catalog.sources]
    across = {what: [p for p in true if of[catalog.source[p[0]]][i] != of[catalog.source[p[1]]][i]]
              for i, what in enumerate(("codec", "rate"))}
    return {"true_pairs": len(true), "predicted_pairs": len(pred), "correct_pairs": len(hit),
            "precision": len(hit) / len(pred) if pred else 1.0,
            "recall": len(hit) / len(true) if true else 1.0,
            "recall_by_kind": {k: round(v["found"] / v["pairs"], 4) for k, v in by_kind.items()},
            "pairs_by_kind": {k: v["pairs"] for k, v in by_kind.items()},
            **{f"pairs_across_{w}": len(ps) for w, ps in across.items()},
            **{f"recall_across_{w}": round(sum(p in hit for p in ps) / len(ps), 4) if ps else 1.0
               for w, ps in across.items()},
            "near_miss_pairs": len(near), "near_miss_grouped": grouped_near,
            "near_miss_rate": grouped_near / len(near) if near else 0.0}
