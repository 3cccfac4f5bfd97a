"""The outcome of an interlinking run: the link table, its counts, and its writers (Parquet, N-Triples, a store).

Links are ``(source_id, target_id, relation)`` rows with GeoSPARQL relation names; as
triples they read ``<source> geo:<relation> <target>``. Ids that are IRIs are kept; other
ids become IRIs through a template (``http://extremeearth.eu/resource/interlink/source/{id}``
by default).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from workbench.linked.interlink.errors import InterlinkError
from workbench.linked.interlink.verification import ALL_RELATIONS
from workbench.linked.vocab import GEO, WB

if TYPE_CHECKING:
    from workbench.linked.store import GeoStore

__all__ = ["SOURCE_IRI", "TARGET_IRI", "LinkResult", "evaluate"]

#: Default IRI templates of ids that are not IRIs.
SOURCE_IRI = WB + "interlink/source/{id}"
TARGET_IRI = WB + "interlink/target/{id}"

_INTERSECTS_BIT = np.uint32(1 << ALL_RELATIONS.index("sfIntersects"))


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _iris(ids: np.ndarray, template: str) -> pd.Series:
    text = pd.Series(ids, dtype=object).astype(str)
    is_iri = text.str.match(r"^(?:https?|urn|file):")
    if "{id}" not in template:
        raise InterlinkError(f"IRI template {template!r} has no {{id}} placeholder")
    head, _, tail = template.partition("{id}")
    minted = head + text.map(lambda v: quote(v, safe="")) + tail
    return "<" + text.where(is_iri, minted) + ">"


@dataclass
class LinkResult:
    """Links between a source and a target geometry set.

    Attributes
    ----------
    links
        DataFrame ``source_id, target_id, relation`` (one row per pair and relation that holds).
    pairs
        DataFrame ``source_row, target_row, mask`` of every verified pair (``mask``: bits of
        :data:`~workbench.linked.interlink.verification.ALL_RELATIONS`; 0 for a disjoint candidate).
    relations
        The relations linked.
    crs
        The CRS both sides were compared in.
    stats
        Counts and timings: ``source``, ``target`` (geometries), ``repaired``, ``skipped``, ``empty``
        (per side, ``source_repaired``...), ``candidates``, ``verified``, ``related`` (intersecting
        verified pairs), ``disjoint`` (pairs of all source x target that do not intersect, when
        every candidate was verified), ``budget``, ``weighting``, ``filter``, ``partitions``, seconds.
    """

    links: pd.DataFrame
    pairs: pd.DataFrame
    relations: tuple[str, ...]
    crs: str | None
    source_ids: np.ndarray = field(repr=False)
    target_ids: np.ndarray = field(repr=False)
    stats: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Links per relation (every requested relation, zero included), and ``sfDisjoint`` pairs."""
        found = self.links["relation"].value_counts()
        out = {name: int(found.get(name, 0)) for name in self.relations}
        if self.stats.get("disjoint") is not None:
            out["sfDisjoint"] = int(self.stats["disjoint"])
        return out

    def related_pairs(self) -> set[tuple[int, int]]:
        """(source row, target row) of the verified pairs that intersect."""
        related = (self.pairs["mask"].to_numpy() & _INTERSECTS_BIT) != 0
        return set(zip(self.pairs["source_row"].to_numpy()[related].tolist(),
                       self.pairs["target_row"].to_numpy()[related].tolist()))

    def summary(self) -> str:
        """One line per count: what was read, filtered, verified and linked."""
        st = self.stats
        lines = [
            (f"source {st['source']} geometries, target {st['target']} (CRS {self.crs}); invalid repaired "
             f"{st['source_repaired']}+{st['target_repaired']}, skipped {st['source_skipped']}+{st['target_skipped']}, "
             f"empty dropped {st['source_empty']}+{st['target_empty']}"),
            (f"filter {st['filter']}: {st['candidates']} candidate pairs in {st['partitions']} partition(s); "
             f"verified {st['verified']}"
             + (f" (budget {st['budget']}, weighting {st['weighting']})" if st.get("budget") else "")),
            "links: " + ", ".join(f"{k} {v}" for k, v in self.counts().items()),
        ]
        return "\n".join(lines)

    def to_parquet(self, path: str | Path) -> Path:
        """Write the link table (``source_id``, ``target_id``, ``relation`` as strings) to Parquet, atomically."""
        path = Path(path)
        frame = self.links.astype({"source_id": str, "target_id": str, "relation": str})
        _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return path

    def to_ntriples(self, path: str | Path | None = None, *, source_iri: str = SOURCE_IRI,
                    target_iri: str = TARGET_IRI) -> str | Path:
        """The links as GeoSPARQL N-Triples (``<s> geo:sfIntersects <t> .``): the text, or written to ``path``."""
        frame = self.links
        if len(frame) == 0:
            text = ""
        else:
            s = _iris(frame["source_id"].to_numpy(), source_iri).to_numpy()
            t = _iris(frame["target_id"].to_numpy(), target_iri).to_numpy()
            p = ("<" + GEO + frame["relation"].astype(str) + ">").to_numpy()
            text = "\n".join((pd.Series(s) + " " + p + " " + t + " .").tolist()) + "\n"
        if path is None:
            return text
        out = Path(path)
        _atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return out

    def load_into(self, store: GeoStore, *, graph: str | None = None, source_iri: str = SOURCE_IRI,
                  target_iri: str = TARGET_IRI) -> int:
        """Assert the links in a GeoSPARQL store (then ``?s geo:sfIntersects ?t`` is answered from them).

        Returns the number of triples loaded.
        """
        text = self.to_ntriples(source_iri=source_iri, target_iri=target_iri)
        assert isinstance(text, str)
        if not text:
            return 0
        return int(store.load_data(text, format="ntriples", graph=graph))


def evaluate(result: LinkResult, reference: LinkResult) -> dict[str, float]:
    """Recall and precision of a (progressive) run against a full run of the same inputs.

    ``recall`` = intersecting pairs found / intersecting pairs of the reference;
    ``precision`` = intersecting pairs found / pairs verified.
    """
    found = result.related_pairs()
    truth = reference.related_pairs()
    verified = len(result.pairs)
    return {
        "recall": len(found & truth) / len(truth) if truth else 1.0,
        "precision": len(found) / verified if verified else 0.0,
        "verified": float(verified),
        "related": float(len(found)),
    }
