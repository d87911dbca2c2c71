"""A catalogue's chunk vectors in a faiss index [II-D retrieval]: every vector tagged with
its recording, its work and where its chunk starts and ends.

The vectors are L2-normalised, so an inner-product index ranks by cosine similarity.
``kind``: ``flat`` (exact), ``ivf`` (inverted lists: ``nlist`` cells, ``nprobe`` searched)
or ``hnsw`` (a graph with ``hnsw_m`` links, ``ef_search`` wide). ``codec`` (ivf, hnsw):
``float`` holds the vectors in faiss as they are; ``sq8`` holds 8 bits per dimension (4×
less memory), and each query's ``refine`` best candidates are re-scored with the float
vectors, so the similarities returned are exact. The float vectors are kept beside the
faiss structure (``vectors.npy``, memory-mapped when loaded: only the rows a query reads
come into memory), so the exact re-ranking needs no second store and adding or removing
recordings never embeds the catalogue again. An index may also hold one 2DFTM vector per
recording (``twodftm.npy``), for late fusion (:mod:`coverhunter.retrieval.fusion`). With
``index.centre`` the stored vectors are centred on the catalogue's mean chunk vector
(:mod:`coverhunter.retrieval.centring`), which ``meta["centre"]`` keeps: queries and added
recordings are centred on it too (:meth:`ChunkIndex.centred`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from coverhunter.atomic import replacing
from coverhunter.retrieval.centring import centred

TAG_COLUMNS = ["recording_id", "work_id", "start_s", "end_s"]
VECTORS, TAGS, META, FAISS, TWODFTM = "vectors.npy", "tags.parquet", "index.json", "faiss.index", "twodftm.npy"
IDENTITY = ("model_sha1", "features_hash", "chunk_s", "hop_s")   # what makes two vectors comparable


@dataclass(frozen=True)
class IndexSpec:
    """How the faiss structure is built (``index:`` params)."""
    kind: str            # flat | ivf | hnsw | auto
    nlist: int           # ivf: cells (at most n_vectors / 39: faiss wants ~39 points per cell)
    nprobe: int          # ivf: cells searched per query
    hnsw_m: int          # hnsw: links per node
    ef_search: int       # hnsw: candidates kept while searching
    auto_flat_below: int  # auto: flat below this many vectors, else hnsw
    codec: str = "float"  # ivf, hnsw: float | sq8 (8-bit codes, then exact re-scoring)
    refine: int = 0       # sq8: candidates per query re-scored exactly (at least the k asked)

    @classmethod
    def from_params(cls, i) -> IndexSpec:
        """From the ``index:`` section (:class:`~coverhunter.params.IndexParams`)."""
        return cls(i.kind, i.nlist, i.nprobe, i.hnsw_m, i.ef_search, i.auto_flat_below, i.codec, i.refine)

    def resolved(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if n < self.auto_flat_below else "hnsw"

    def compressed(self, n: int) -> bool:
        """Whether faiss holds 8-bit codes (then search re-scores its candidates exactly)."""
        return self.codec == "sq8" and self.resolved(n) != "flat"


def _faiss_index(vectors: np.ndarray, spec: IndexSpec) -> faiss.Index:
    """The search structure over ``vectors`` ``(n, d)``, on the CPU."""
    n, d = vectors.shape
    kind = spec.resolved(n)
    if spec.codec not in ("float", "sq8"):
        raise ValueError(f"index.codec must be float or sq8, got {spec.codec!r}")
    sq8, ip = spec.compressed(n), faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = max(1, min(spec.nlist, n // 39))
        index = (faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
                 if sq8 else faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, ip))
        index.train(vectors)
        index.nprobe = min(spec.nprobe, nlist)
    elif kind == "hnsw":
        index = (faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, spec.hnsw_m, ip) if sq8
                 else faiss.IndexHNSWFlat(d, spec.hnsw_m, ip))
        if sq8:
            index.train(vectors)                         # the per-dimension ranges of the codes
        index.hnsw.efSearch = spec.ef_search
    else:
        raise ValueError(f"index.kind must be flat, ivf, hnsw or auto, got {spec.kind!r}")
    if n:
        index.add(vectors)
    return index


def _on_gpu(kind: str) -> bool:
    """faiss-gpu installed: flat and IVF run on the GPU(s) (written, not yet run on a GPU here)."""
    return kind != "hnsw" and faiss.get_num_gpus() > 0


def _on_device(index: faiss.Index, kind: str) -> faiss.Index:
    return faiss.index_cpu_to_all_gpus(index) if _on_gpu(kind) else index


class ChunkIndex:
    """Chunk vectors ``(n, d)`` with tags (one row each: ``TAG_COLUMNS``), searchable.

    ``meta`` records what the vectors were made with (model, features, chunking); a query
    is embedded the same way or refused (:mod:`coverhunter.retrieval.search`).
    ``built``: a faiss structure already made over these vectors (a saved index's).
    ``twodftm``: ``(n_recordings, D)`` one 2DFTM vector per recording, in the order of
    :meth:`recordings`, or None."""

    def __init__(self, vectors: np.ndarray, tags: pd.DataFrame, spec: IndexSpec, meta: dict,
                 built: faiss.Index | None = None, twodftm: np.ndarray | None = None):
        if len(vectors) != len(tags):
            raise ValueError(f"{len(vectors)} vectors but {len(tags)} tags")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)   # a memory map stays one
        self.tags = tags.reset_index(drop=True)[TAG_COLUMNS]
        self.spec, self.meta = spec, dict(meta)
        self.faiss = _on_device(built if built is not None else _faiss_index(self.vectors, spec), self.kind)
        # the tags as arrays, for ranking without pandas: row -> recording number (first-seen
        # order), and each recording's rows, ascending
        self.recording_of, self.recording_names = pd.factorize(self.tags["recording_id"])
        by_recording = np.argsort(self.recording_of, kind="stable")
        self.rows_by_number = np.split(by_recording, np.cumsum(np.bincount(self.recording_of))[:-1])
        self._rows = dict(zip(self.recording_names, self.rows_by_number))       # recording -> rows
        if twodftm is not None and len(twodftm) != len(self.recording_names):
            raise ValueError(f"{len(twodftm)} 2DFTM vectors for {len(self.recording_names)} recordings")
        self.twodftm = twodftm
        self.work_of_row = self.tags["work_id"].to_numpy()
        self.span_of_row = self.tags[["start_s", "end_s"]].to_numpy(np.float64)   # (n, 2) seconds

    @classmethod
    def from_recordings(cls, chunks: Sequence[np.ndarray], starts_s: Sequence[np.ndarray],
                        chunk_s: float, recording_ids: Sequence[str], work_ids: Sequence[str],
                        durations_s: Sequence[float], spec: IndexSpec, meta: dict,
                        twodftm: np.ndarray | None = None) -> ChunkIndex:
        """From per-recording chunk vectors ``(n_i, d)`` and their start times (s);
        ``twodftm``: one row per recording, in the same order."""
        vectors, tags = _stack(chunks, starts_s, chunk_s, recording_ids, work_ids, durations_s)
        return cls(vectors, tags, spec, meta, twodftm=twodftm)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def kind(self) -> str:
        return self.spec.resolved(len(self))

    @property
    def centre(self) -> list[float] | None:
        """The mean chunk vector the stored vectors were centred on (``index.centre``), or None."""
        return self.meta.get("centre")

    def centred(self, vectors: np.ndarray) -> np.ndarray:
        """Chunk vectors ``(m, d)`` as this index stores them: centred on its mean, if it has one."""
        return vectors if self.centre is None else centred(vectors, self.centre).astype(np.float32)

    def recordings(self) -> list[str]:
        return list(self._rows)

    def rows_of(self, recording_id: str) -> np.ndarray:
        return self._rows[recording_id]

    def chunks_of(self, recording_ids: Sequence[str]) -> list[np.ndarray]:
        """The chunk vectors of each of ``recording_ids``: ``(n_i, d)`` per recording."""
        return [self.vectors[self._rows[r]] for r in recording_ids]

    def numbers_of(self, recording_ids: Sequence[str]) -> list[int]:
        """Each recording's number: its place in :meth:`recordings` (and its row of ``twodftm``)."""
        number = {r: i for i, r in enumerate(self.recording_names)}
        return [number[r] for r in recording_ids]

    def twodftm_of(self, recording_ids: Sequence[str]) -> np.ndarray:
        """The 2DFTM vectors of ``recording_ids`` ``(n, D)``, in that order."""
        return np.asarray(self.twodftm[self.numbers_of(recording_ids)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar chunk vectors of each query ``(m, d)``: similarities and
        rows, each ``(m, k)`` (row -1 where fewer than ``k`` exist)."""
        k = min(k, len(self))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if not self.spec.compressed(len(self)):
            return self.faiss.search(queries, k)
        _, rows = self.faiss.search(queries, min(max(k, self.spec.refine), len(self)))   # (m, c)
        sims = np.einsum("md,mcd->mc", queries, self.vectors[np.maximum(rows, 0)])   # exact
        sims = np.where(rows >= 0, sims, -np.inf)
        order = np.lexsort((rows, -sims), axis=1)[:, :k]                 # best first, then lower row
        return np.take_along_axis(sims, order, 1).astype(np.float32), np.take_along_axis(rows, order, 1)

    def add(self, other: ChunkIndex) -> ChunkIndex:
        """This index with ``other``'s recordings added (replacing any with the same id)."""
        _check_same(self.meta, other.meta)
        if (self.twodftm is None) != (other.twodftm is None):
            raise ValueError("one index holds 2DFTM vectors and the other does not: rebuild the "
                             "index (`coverhunter index build`)")
        kept = self.drop([r for r in other.recordings() if r in self._rows])
        vectors = np.concatenate([kept.vectors, other.vectors])
        twodftm = None if self.twodftm is None else np.concatenate([kept.twodftm, other.twodftm])
        return ChunkIndex(vectors, pd.concat([kept.tags, other.tags]), self.spec, self.meta,
                          twodftm=twodftm)

    def drop(self, recording_ids: Sequence[str]) -> ChunkIndex:
        """This index without ``recording_ids`` (unknown ids are an error naming them)."""
        unknown = sorted(set(recording_ids) - set(self._rows))
        if unknown:
            raise KeyError(f"not in the index: {', '.join(unknown[:10])}"
                           + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
        return self.subset(set(self._rows) - set(recording_ids))

    def subset(self, recording_ids: set[str]) -> ChunkIndex:
        """This index with only the recordings in ``recording_ids``, in their present order."""
        keep = self.tags["recording_id"].isin(recording_ids).to_numpy()
        twodftm = None if self.twodftm is None else \
            self.twodftm[np.isin(self.recording_names, list(recording_ids))]
        return ChunkIndex(self.vectors[keep], self.tags[keep], self.spec, self.meta, twodftm=twodftm)

    def save(self, folder: str | Path) -> Path:
        """Write ``vectors.npy``, ``tags.parquet`` and ``index.json`` (spec and meta), and for
        ivf and hnsw the faiss structure (``faiss.index``: a graph over millions of vectors
        takes many minutes to build), swapped in together (a killed save leaves the previous
        index whole); a flat structure is rebuilt on load (a copy of the vectors)."""
        folder = Path(folder)
        doc = {"spec": asdict(self.spec), "meta": self.meta, "kind": self.kind,
               "n_vectors": len(self), "n_recordings": len(self._rows)}
        with replacing(folder) as (new,):
            np.save(new / VECTORS, self.vectors)
            if self.twodftm is not None:
                np.save(new / TWODFTM, np.asarray(self.twodftm, dtype=np.float32))
            self.tags.to_parquet(new / TAGS, index=False)
            if self.kind != "flat":
                on_cpu = faiss.index_gpu_to_cpu(self.faiss) if _on_gpu(self.kind) else self.faiss
                faiss.write_index(on_cpu, str(new / FAISS))
            (new / META).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ChunkIndex:
        folder = Path(folder)
        missing = [n for n in (VECTORS, TAGS, META) if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a chunk index (missing {', '.join(missing)}): "
                                    "build one with `coverhunter index build`")
        doc = json.loads((folder / META).read_text())
        built = faiss.read_index(str(folder / FAISS)) if (folder / FAISS).is_file() else None
        if built is not None and built.ntotal != doc["n_vectors"]:
            built = None                                   # not this index's: rebuilt from the vectors
        twodftm = np.load(folder / TWODFTM, mmap_mode="r") if (folder / TWODFTM).is_file() else None
        return cls(np.load(folder / VECTORS, mmap_mode="r"), pd.read_parquet(folder / TAGS),
                   IndexSpec(**doc["spec"]), doc["meta"], built, twodftm)


def _stack(chunks, starts_s, chunk_s, recording_ids, work_ids, durations_s) -> tuple[np.ndarray, pd.DataFrame]:
    rows = [(r, w, float(s), float(min(s + chunk_s, dur)))
            for c, st, r, w, dur in zip(chunks, starts_s, recording_ids, work_ids, durations_s)
            for s in st]
    d = chunks[0].shape[1] if len(chunks) else 0
    vectors = np.concatenate(chunks) if len(chunks) else np.zeros((0, d), np.float32)
    return vectors, pd.DataFrame(rows, columns=TAG_COLUMNS)


def _check_same(a: dict, b: dict) -> None:
    differ = [k for k in IDENTITY if a.get(k) != b.get(k)]
    if differ:
        raise ValueError("the recordings to add were embedded differently from the index: "
                         + ", ".join(f"{k} ({a.get(k)!r} in the index, {b.get(k)!r} new)" for k in differ))
