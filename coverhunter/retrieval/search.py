"""Identify a recording against a catalogue [II-D retrieval]: which works is it a version
of, how sure, and where does it match.

The query's chunks are embedded as the index's were, each finds its ``k`` nearest
catalogue chunks, recordings are scored by the paper's closest-chunk-pair rule
(the highest cosine similarity of any query chunk with any of theirs), a shortlist is
re-ranked exactly against every chunk of each recording (and, when the index holds 2DFTM
vectors, by the fused distance of :mod:`coverhunter.retrieval.fusion`), ordered by the
mutual-neighbour score of :mod:`coverhunter.retrieval.rerank`, and the best recording
stands for its work. A work is a ``cover`` when its score reaches the threshold calibrated on the
validation works at a target false-accept rate (:func:`calibrate`), else ``no match``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from coverhunter.digest import file_sha1
from coverhunter.features.audio import level_in_words, load_audio, rms_dbfs
from coverhunter.features.chunking import chunk_features
from coverhunter.features.cqt import CQTFrontEnd, extract_cqt
from coverhunter.features.extract import features_hash
from coverhunter.model import CoverHunterNet
from coverhunter.model.checkpoint import load_model
from coverhunter.model.runtime import for_runtime
from coverhunter.params import Params, RerankParams
from coverhunter.retrieval.fusion import Fusion, twodftm_vectors
from coverhunter.retrieval.index import IDENTITY, ChunkIndex
from coverhunter.retrieval.inference import embed_chunks
from coverhunter.retrieval.metrics import track_distances
from coverhunter.retrieval.rerank import neighbour_rerank

COVER, NO_MATCH = "cover", "no match"
_BLAS = ThreadpoolController()     # numpy's BLAS, to keep the shortlist's small products on one thread


@dataclass(frozen=True)
class Match:
    """One catalogue work for a query: its best recording, the similarity of their closest
    chunk pair (fused with the 2DFTM when the index has fusion), the decision on it, the
    matched stretch in each (seconds), and the score the works are ordered by."""
    work_id: str
    recording_id: str
    score: float
    decision: str
    query_s: tuple[float, float]
    reference_s: tuple[float, float]
    rank_score: float          # what the works are ordered by: ``score`` re-ranked by mutual neighbours

    def as_dict(self) -> dict:
        return asdict(self)


def index_meta(model_path: str | Path, p: Params, model_version: str | None = None) -> dict:
    """What a query must share with the index: the model's bytes, the CQT settings and code, and
    the chunking (``index.chunk_s`` / ``index.hop_s``)."""
    return {"model_sha1": file_sha1(model_path), "model_version": model_version,
            "features_hash": features_hash(p.features), "chunk_s": p.index.chunk_s,
            "hop_s": p.index.hop_s}


def check_compatible(index: ChunkIndex, expected: dict, index_dir: str | Path) -> None:
    """Refuse a query set up unlike the index, naming what differs and the fix."""
    names = {"model_sha1": "model", "features_hash": "features (CQT params or front-end code)",
             "chunk_s": "index.chunk_s", "hop_s": "index.hop_s"}      # IDENTITY, in words
    differ = [names[k] for k in IDENTITY if index.meta.get(k) != expected.get(k)]
    if differ:
        raise ValueError(f"{index_dir} was built with another {', '.join(differ)} than this "
                         "query would use: rebuild it (`coverhunter index build`) or query "
                         "with the model and params it was built with")


def chunk_vectors(model: CoverHunterNet, feats: np.ndarray, chunk_s: float, hop_s: float,
                  frame_rate: float, batch: int, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """A recording's chunk vectors ``(n, d)`` and chunk start times ``(n,)`` in seconds."""
    starts, chunks = chunk_features(feats, chunk_s, hop_s, frame_rate)
    return embed_chunks(model, chunks, batch, device), starts / frame_rate


def _diagonal(sim: np.ndarray, i: int, j: int, floor: float) -> tuple[int, int, int, int]:
    """The run of chunk pairs on the best pair's diagonal (same time offset) whose
    similarity stays at or above ``floor``: first and last query and reference chunks."""
    lo = 0
    while i - lo - 1 >= 0 and j - lo - 1 >= 0 and sim[i - lo - 1, j - lo - 1] >= floor:
        lo += 1
    hi = 0
    while i + hi + 1 < sim.shape[0] and j + hi + 1 < sim.shape[1] and sim[i + hi + 1, j + hi + 1] >= floor:
        hi += 1
    return i - lo, i + hi, j - lo, j + hi


def rank(index: ChunkIndex, q_vectors: np.ndarray, q_starts: np.ndarray, q_duration: float,
         k: int, shortlist: int, threshold: float | None, top: int,
         fusion: Fusion | None = None, q_twodftm: np.ndarray | None = None,
         rerank: RerankParams | None = None) -> list[Match]:
    """Works for query chunk vectors ``(m, d)`` starting at ``q_starts`` (s), best first.
    With ``fusion`` (and the query's 2DFTM vector ``q_twodftm`` ``(D,)``) the shortlist is
    scored, and decided, by the fused score; with ``rerank`` it is then ordered by the
    mutual-neighbour score (``rank_score``); the matched stretch still follows the chunks."""
    sims, rows = index.search(q_vectors, k)                        # (m, k) each
    found = rows >= 0
    fetched, fetched_sims = index.recording_of[rows[found]], sims[found]
    by_sim = np.argsort(-fetched_sims, kind="stable")
    # recordings by their best fetched chunk (ties: the earlier fetched), the first `shortlist`
    numbers, first = np.unique(fetched[by_sim], return_index=True)
    short = numbers[np.argsort(first, kind="stable")][:shortlist]
    if not len(short):
        return []
    refs = [index.rows_by_number[r] for r in short]
    bounds = np.cumsum([0, *map(len, refs)])
    # products this small run fastest on one BLAS thread: more only contend with faiss's
    with _BLAS.limit(limits=1, user_api="blas"):
        gallery = index.vectors[np.concatenate(refs)]                  # (Σ n_ref, d)
        sim = q_vectors @ gallery.T                                    # exact (m, Σ n_ref), one product
        scores = np.maximum.reduceat(sim.max(axis=0), bounds[:-1])      # closest chunk pair per recording
        if fusion is not None:
            d_2dftm = fusion.twodftm_distances(q_twodftm[None], index.twodftm[short])[0]   # (len(short),)
            scores = 1.0 - fusion.distances(1.0 - scores, d_2dftm)
        order = _neighbour_order(index, short, gallery, bounds, scores, fusion, rerank)
    names = index.recording_names[short]
    best: dict[str, int] = {}                                          # work -> its best recording
    for r in sorted(range(len(short)), key=lambda r: (-order[r], names[r])):
        best.setdefault(index.work_of_row[refs[r][0]], r)
    chunk_s = index.meta["chunk_s"]
    matches = []
    for work, r in list(best.items())[:top]:
        ref, block = refs[r], sim[:, bounds[r]:bounds[r + 1]]
        i, j = np.unravel_index(int(np.argmax(block)), block.shape)
        score, closest = float(scores[r]), float(block[i, j])      # the same without fusion
        # the stretch: the best chunk pair's diagonal while its chunks stay at the threshold
        floor = threshold if threshold is not None and closest >= threshold else closest
        i0, i1, j0, j1 = _diagonal(block, i, j, floor)
        ref_s = (float(index.span_of_row[ref[j0], 0]), float(index.span_of_row[ref[j1], 1]))
        q_s = (float(q_starts[i0]), float(min(q_starts[i1] + chunk_s, q_duration)))
        decision = COVER if threshold is not None and score >= threshold else NO_MATCH
        matches.append(Match(str(work), str(names[r]), score, decision, q_s, ref_s, float(order[r])))
    return matches


def _neighbour_order(index: ChunkIndex, short: np.ndarray, gallery: np.ndarray, bounds: np.ndarray,
                     scores: np.ndarray, fusion: Fusion | None, rerank: RerankParams | None) -> np.ndarray:
    """The shortlist's ``rank_score`` ``(len(short),)``: ``scores`` where ``rerank`` is off,
    else the first ``rerank.shortlist`` by score re-ranked by mutual neighbours, their
    similarities to each other computed as the query's are, and the rest behind them."""
    if rerank is None or rerank.weight == 0:
        return np.asarray(scores, np.float64)
    near = np.argsort(-scores, kind="stable")[:rerank.shortlist]       # positions in `short`
    chunks = [gallery[bounds[r]:bounds[r + 1]] for r in near]         # each (n_r, d)
    d_short = track_distances(chunks, chunks)                          # closest chunk pairs (K, K)
    if fusion is not None:
        tw = index.twodftm[short[near]]
        d_short = fusion.distances(d_short, fusion.twodftm_distances(tw, tw))
    order = np.asarray(scores, np.float64).copy()
    order[near] = neighbour_rerank(scores[near], 1.0 - d_short, rerank.weight)
    rest = np.setdiff1d(np.arange(len(short)), near)
    if len(rest):                                                      # behind the re-ranked, in their order
        order[rest] += order[near].min() - order[rest].max() - 1.0
    return order


class Searcher:
    """A model and the catalogue index built with it: ``identify(path)`` → ranked works."""

    def __init__(self, index: ChunkIndex, model: CoverHunterNet, p: Params, device: str = "cpu"):
        self.index, self.p, self.device = index, p, device
        self.model = for_runtime(model.eval(), p.evaluate.runtime)
        self.front = CQTFrontEnd(p.features)
        self.fusion = index_fusion(index)

    @classmethod
    def load(cls, index_dir: str | Path, model_path: str | Path, p: Params,
             device: str = "cpu") -> Searcher:
        """Refuses a model, CQT settings or chunking other than the index's."""
        index = ChunkIndex.load(index_dir)
        check_compatible(index, index_meta(model_path, p), index_dir)
        return cls(index, load_model(model_path), p, device)

    @property
    def threshold(self) -> float | None:
        return self.index.meta.get("threshold")

    @torch.no_grad()
    def identify_features(self, feats: np.ndarray, top: int | None = None) -> list[Match]:
        """Works for a log-CQT ``(frames, bins)``, best first."""
        fps = self.p.features.frame_rate
        vectors, starts = chunk_vectors(self.model, feats, self.index.meta["chunk_s"],
                                        self.index.meta["hop_s"], fps, self.p.evaluate.batch_chunks,
                                        self.device)
        vectors = self.index.centred(vectors)            # as the catalogue's were stored
        ip = self.p.index
        q_twodftm = None if self.fusion is None else \
            twodftm_vectors([feats], self.fusion.constants, self.p.features.bins_per_octave)[0]
        return rank(self.index, vectors, starts, len(feats) / fps, ip.k, ip.shortlist,
                    self.threshold, top or ip.top, self.fusion, q_twodftm, self.p.rerank)

    def identify(self, path: str | Path, top: int | None = None) -> list[Match]:
        """Works for an audio file (any format the pipeline decodes), best first."""
        try:
            return self.identify_audio(load_audio(path, self.p.features.sample_rate), top)
        except SilentQueryError as err:
            raise SilentQueryError(f"{path}: {err}") from None

    def identify_audio(self, audio: np.ndarray, top: int | None = None) -> list[Match]:
        """Works for mono samples ``(n,)`` at ``features.sample_rate``, best first. A
        silent query (under ``data.min_rms_dbfs``) raises :class:`SilentQueryError`: its
        log-CQT would be flat and match whatever is flattest in the catalogue."""
        level, floor = rms_dbfs(audio), self.p.data.min_rms_dbfs
        if level < floor:
            raise SilentQueryError(f"the recording is silent (RMS {level_in_words(level)}, under the {floor:g} dBFS "
                                   "floor of data.min_rms_dbfs): there is nothing to identify")
        (feats,) = extract_cqt([audio], self.front, self.device)
        return self.identify_features(feats, top)


def index_fusion(index: ChunkIndex) -> Fusion | None:
    """The late fusion an index was built with (its 2DFTM vectors and ``meta["fusion"]``), or
    None where it ranks by the model alone (no fusion, or its weight 0)."""
    doc = index.meta.get("fusion")
    if doc is None or index.twodftm is None or doc["weight"] == 0:
        return None
    return Fusion.from_dict(doc)


class SilentQueryError(ValueError):
    """The query holds no sound to identify."""


def calibrate(negative_scores: np.ndarray, target_far: float) -> float:
    """The score threshold at which a share ``target_far`` of queries whose work is not in
    the catalogue would still be called a cover: the (1 - far) quantile of their best
    scores (the higher order statistic, so the measured rate never exceeds the target)."""
    if len(negative_scores) == 0:
        raise ValueError("no queries to calibrate the threshold on")
    return float(np.quantile(np.asarray(negative_scores, dtype=np.float64), 1.0 - target_far,
                             method="higher"))


def open_set_scores(similarity: np.ndarray, query_works, gallery_works, query_ids,
                    gallery_ids) -> tuple[np.ndarray, np.ndarray]:
    """From track similarities ``(n_q, n_g)`` (closest chunk pair), per query: its best
    score among the *other* works (what it scores when its own work is absent from the
    catalogue) and among its own work's other recordings (NaN when there are none)."""
    qw, gw = np.asarray(query_works)[:, None], np.asarray(gallery_works)[None, :]
    itself = np.asarray(query_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    same = (qw == gw) & ~itself
    other = qw != gw
    neg = np.where(other, similarity, -np.inf).max(axis=1)
    pos = np.where(same, similarity, -np.inf).max(axis=1)
    return neg, np.where(np.isfinite(pos), pos, np.nan)


def open_set_rates(negative: np.ndarray, positive: np.ndarray, threshold: float) -> dict:
    """False-accept rate (absent works called a cover) and false-reject rate (present works
    not called one) at ``threshold``."""
    pos = positive[~np.isnan(positive)]
    return {"threshold": threshold, "FAR": float(np.mean(negative >= threshold)),
            "FRR": float(np.mean(pos < threshold)) if len(pos) else None,
            "n_negative": int(len(negative)), "n_positive": int(len(pos))}


def index_distances(index: ChunkIndex, queries: list[np.ndarray], k: int) -> tuple[np.ndarray, list[str]]:
    """Track distances ``(n_queries, n_recordings)`` through the index: each query's chunks
    ``(n_i, d)`` fetch their ``k`` nearest chunks, and a recording's distance is 1 minus the
    best similarity among its fetched chunks (2, the largest cosine distance, when none was
    fetched). With a flat index and ``k`` = every vector this is the closest-chunk-pair
    distance of :func:`~coverhunter.retrieval.metrics.track_distances`, exactly."""
    gallery = index.recordings()
    column = index.tags["recording_id"].map({r: i for i, r in enumerate(gallery)}).to_numpy()
    sims, rows = index.search(np.concatenate(queries), k)                # (sum n_i, k)
    out = np.full((len(queries), len(gallery)), 2.0, dtype=np.float32)
    bounds = np.cumsum([0, *(len(q) for q in queries)])
    for qi in range(len(queries)):
        s, r = sims[bounds[qi]:bounds[qi + 1]], rows[bounds[qi]:bounds[qi + 1]]
        best = np.full(len(gallery), -np.inf)
        np.maximum.at(best, column[r[r >= 0]], s[r >= 0])
        found = np.isfinite(best)
        out[qi, found] = 1.0 - best[found]
    return out, gallery


def recall_at(index: ChunkIndex, exact: ChunkIndex, queries: np.ndarray, k: int = 10) -> float:
    """Share of the exact ``k`` nearest chunks that ``index`` also returns (1 for flat)."""
    _, got = index.search(queries, k)
    _, want = exact.search(queries, k)
    return float(np.mean([len(set(g) & set(w)) / k for g, w in zip(got, want)]))
