"""Late fusion: the model's track distance with the training-free 2DFTM's.

Not a step of the CoverHunter paper. The learned model and the 2-D Fourier transform
magnitude of chroma (Bertin-Mahieux & Ellis 2012, :mod:`coverhunter.retrieval.baselines`)
fail on different recordings, so a weighted sum of their distances ranks better than
either where the model has not heard music like the query's. The two distances live on
different scales (closest chunk pair of unit vectors; cosine of one 2DFTM vector per
recording), so the 2DFTM's is rescaled to the model's by the ratio of their means over
pairs of distinct recordings of the catalogue:

    d = (1 - w) · d_model + w · (m_model / m_2dftm) · d_2dftm

``w = 0`` is the model alone, bit for bit; a recording and its copy are still at distance
0, and ``1 - d`` reads like the model's cosine similarity, so a fused score is compared
with a threshold as the model's is. (Standardising both distances instead, by mean and
standard deviation, scored within 0.015 mAP of this at every weight measured.)

With ``fusion.centre`` the 2DFTM vectors are first centred on the catalogue's mean vector
(:mod:`coverhunter.retrieval.centring`), fitted with the distance means and stored with them.

With ``fusion.fit`` the weight is chosen on labelled works the model never trained on
(:func:`fitted_choice`): the largest ``w`` of a grid whose re-ranked mAP is within
``fusion.plateau`` of the best. Where the model knows the music, that keeps ``w`` small;
where it does not, the 2DFTM gets more say. The 2DFTM's constants (a ``baselines:``
profile) are chosen with it: the first of ``fusion.candidates()`` whose best mAP is within
the plateau of the best profile's. Evaluation deals a set's works into folds and scores
each fold at the profile and weight fitted on the others (:func:`cross_fitted`), so no
query's choice has seen its own work's labels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from coverhunter.params import BaselineParams, FusionParams, RerankParams
from coverhunter.retrieval.baselines import baseline_vectors
from coverhunter.retrieval.centring import centred, mean_vector
from coverhunter.retrieval.metrics import average_precisions, track_distances
from coverhunter.retrieval.rerank import rerank_square


@dataclass(frozen=True)
class Fusion:
    """The fused distance of the module docstring: weight ``w`` of the 2DFTM, both
    distances' means over the catalogue's pairs, and the 2DFTM constants (a query's vector
    must be made with the catalogue's)."""
    weight: float
    model_mean: float
    twodftm_mean: float
    constants: BaselineParams
    centre: tuple[float, ...] | None = None   # the catalogue's mean 2DFTM vector (fusion.centre), or None
    profile: str | None = None                # the baselines: profile of ``constants`` (None: not recorded)

    def distances(self, d_model: np.ndarray, d_twodftm: np.ndarray) -> np.ndarray:
        """Fused distances from the model's and the 2DFTM's (same shape, broadcast)."""
        if self.weight == 0:
            return np.asarray(d_model)
        # a 2DFTM with every pair at 0 (or none measured) tells nothing: the model ranks alone
        scale = self.model_mean / self.twodftm_mean if self.twodftm_mean > 0 else 0.0
        return ((1.0 - self.weight) * np.asarray(d_model, dtype=np.float64)
                + self.weight * scale * np.asarray(d_twodftm, dtype=np.float64))

    def twodftm_distances(self, queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """2DFTM distances ``(n_q, n_g)`` of the vectors ``(n_q, D)``, ``(n_g, D)`` as this
        fusion compares them (centred on the catalogue's mean when fitted so)."""
        return twodftm_distances(queries, gallery, self.centre)

    def as_dict(self) -> dict:
        return asdict(self) | {"centre": None if self.centre is None else list(self.centre)}

    def summary(self) -> dict:
        """:meth:`as_dict` for a report: whether it centres, not the mean vector itself."""
        return {k: v for k, v in self.as_dict().items() if k != "centre"} | {"centred": self.centre is not None}

    @classmethod
    def from_dict(cls, doc: dict) -> Fusion:
        centre = doc.get("centre")          # absent from indexes built before fusion.centre
        return cls(float(doc["weight"]), float(doc["model_mean"]), float(doc["twodftm_mean"]),
                   BaselineParams(**doc["constants"]), None if centre is None else tuple(map(float, centre)),
                   doc.get("profile"))


def twodftm_distances(queries: np.ndarray, gallery: np.ndarray,
                      centre: Sequence[float] | None = None) -> np.ndarray:
    """Cosine distances of 2DFTM vectors, each first centred on ``centre`` (None: as they are)."""
    return baseline_distances(centred(queries, centre), centred(gallery, centre))


def twodftm_vectors(features: Sequence[np.ndarray], constants: BaselineParams,
                    bins_per_octave: int = 12) -> np.ndarray:
    """One unit 2DFTM vector per recording's log-CQT ``(frames, bins)``: ``(n, D)`` float32."""
    if not len(features):
        return np.zeros((0, 0), np.float32)
    return np.concatenate(baseline_vectors("2dftm", features, constants, bins_per_octave)).astype(np.float32)


def baseline_distances(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine distances of unit 2DFTM vectors ``(n_q, D)`` × ``(n_g, D)`` → ``(n_q, n_g)``."""
    return 1.0 - np.asarray(queries, np.float64) @ np.asarray(gallery, np.float64).T


def fit_square(d_model: np.ndarray, d_twodftm: np.ndarray, weight: float,
               constants: BaselineParams, centre: tuple[float, ...] | None = None,
               profile: str | None = None) -> Fusion:
    """The :class:`Fusion` whose means are measured on leave-one-out matrices ``(n, n)`` of
    the same recordings (the diagonal, each recording against itself, left out; a single
    recording has no pair, and its means are 0); ``d_twodftm`` as the fusion compares, i.e.
    centred on ``centre`` when given."""
    distinct = ~np.eye(len(d_model), dtype=bool)
    means = [float(np.mean(np.asarray(d, np.float64)[distinct])) if distinct.any() else 0.0
             for d in (d_model, d_twodftm)]
    return Fusion(float(weight), means[0], means[1], constants, centre, profile)


def fit_catalogue(chunks: Sequence[np.ndarray], twodftm: np.ndarray, weight: float,
                  constants: BaselineParams, max_recordings: int, seed: int, centre: bool = False,
                  profile: str | None = None) -> Fusion:
    """:func:`fit_square` on a catalogue: per recording its chunk vectors ``(n_i, d)`` and
    2DFTM vector (``twodftm`` ``(n, D)``) made with ``constants`` (of ``profile``); at most
    ``max_recordings`` of them, drawn with ``seed`` (means over pairs, and with ``centre``
    the mean vector: a sample of a large catalogue suffices)."""
    return fit_catalogue_profiles(chunks, {profile: (constants, twodftm)}, weight, max_recordings, seed,
                                  centre)[profile]


def fit_catalogue_profiles(chunks: Sequence[np.ndarray],
                           twodftms: Mapping[str | None, tuple[BaselineParams, np.ndarray]], weight: float,
                           max_recordings: int, seed: int, centre: bool = False) -> dict[str | None, Fusion]:
    """:func:`fit_catalogue` for several profiles (``{profile: (constants, 2DFTM vectors
    (n, D))}``) on one sample of the catalogue, whose model distances are measured once."""
    n = len(chunks)
    pick = np.sort(np.random.default_rng(seed).choice(n, max_recordings, replace=False)) \
        if n > max_recordings else np.arange(n)
    sample = [chunks[i] for i in pick]
    d_model = track_distances(sample, sample)
    out = {}
    for profile, (constants, twodftm) in twodftms.items():
        vectors = np.asarray(twodftm)[pick]
        mean = mean_vector(vectors) if centre else None
        out[profile] = fit_square(d_model, twodftm_distances(vectors, vectors, mean), weight, constants, mean, profile)
    return out


def weight_grid(p: FusionParams) -> np.ndarray:
    """The weights ``fusion.fit`` tries: 0, ``fit_step``, ... up to 1."""
    return np.round(np.arange(0.0, 1.0 + 1e-9, p.fit_step), 6)


def weight_aps(fusion: Fusion, d_model: np.ndarray, d_twodftm: np.ndarray, works: Sequence[str],
               ids: Sequence[str], grid: np.ndarray, rerank: RerankParams) -> np.ndarray:
    """Each query's average precision at each weight of ``grid`` ``(len(grid), n)``: a set's
    leave-one-out matrices ``(n, n)`` fused at that weight and re-ranked (NaN where a
    query has no other version of its work)."""
    return np.stack([average_precisions(rerank_square(replace(fusion, weight=float(w)).distances(d_model, d_twodftm),
                                                      rerank.shortlist, rerank.weight), works, works, ids, ids)
                     for w in grid])


def _mean_aps(aps: np.ndarray, queries: np.ndarray) -> np.ndarray | None:
    """mAP at each weight ``(len(grid),)`` over the ``queries`` (a mask or row numbers of
    ``aps`` ``(len(grid), n)``) that have something relevant; None when none has."""
    chosen = aps[:, queries]
    chosen = chosen[:, ~np.isnan(chosen[0])]
    return chosen.mean(axis=1) if chosen.shape[1] else None


def best_weight(aps: np.ndarray, queries: np.ndarray, grid: np.ndarray, plateau: float) -> float | None:
    """The largest weight of ``grid`` whose mAP over the ``queries`` (a mask or row numbers
    of ``aps`` ``(len(grid), n)``) is within ``plateau`` of the best; None when none of
    them has anything relevant."""
    score = _mean_aps(aps, queries)
    return None if score is None else float(grid[np.flatnonzero(score >= score.max() - plateau).max()])


Choice = tuple[str, float]       # a fusion's baselines: profile and weight


def best_choice(aps: Mapping[str, np.ndarray], queries: np.ndarray, grid: np.ndarray,
                plateau: float) -> Choice | None:
    """The first profile of ``aps`` (``{profile: (len(grid), n)}``, in order of preference)
    whose best mAP over the ``queries`` is within ``plateau`` of the best profile's, at its
    :func:`best_weight`; None when the queries cannot tell."""
    scores = {name: _mean_aps(a, queries) for name, a in aps.items()}
    if any(score is None for score in scores.values()):
        return None
    top = max(score.max() for score in scores.values())
    name = next(name for name, score in scores.items() if score.max() >= top - plateau)
    return name, best_weight(aps[name], queries, grid, plateau)


Candidates = Mapping[str, tuple[Fusion, np.ndarray]]    # profile -> its fusion, its 2DFTM distances (n, n)


def profile_aps(fusions: Candidates, d_model: np.ndarray, works: Sequence[str], ids: Sequence[str],
                grid: np.ndarray, rerank: RerankParams) -> dict[str, np.ndarray]:
    """:func:`weight_aps` of each profile's fusion: ``{profile: (len(grid), n)}``."""
    return {name: weight_aps(fusion, d_model, d_twodftm, works, ids, grid, rerank)
            for name, (fusion, d_twodftm) in fusions.items()}


def fitted_choice(fusions: Candidates, d_model: np.ndarray, works: Sequence[str], ids: Sequence[str],
                  p: FusionParams, rerank: RerankParams) -> Choice | None:
    """:func:`best_choice` over every recording of a set (its leave-one-out matrices)."""
    grid = weight_grid(p)
    return best_choice(profile_aps(fusions, d_model, works, ids, grid, rerank), np.arange(len(ids)), grid, p.plateau)


def cross_fitted(fusions: Candidates, d_model: np.ndarray, works: Sequence[str], ids: Sequence[str],
                 p: FusionParams, rerank: RerankParams, seed: int) -> tuple[np.ndarray, np.ndarray, list[Choice]]:
    """Fused and re-ranked leave-one-out distances ``(n, n)`` of a set whose works are dealt
    into ``p.fit_folds`` folds (shuffled with ``seed``): each fold's rows use the profile and
    weight fitted on the other folds' (the first profile at its fusion's weight where they
    cannot tell). Also each fold's choice."""
    works = np.asarray(works)
    names = np.random.default_rng(seed).permutation(np.unique(works))
    fold_of = dict(zip(names, np.arange(len(names)) % min(p.fit_folds, len(names))))
    fold = np.array([fold_of[w] for w in works])
    grid = weight_grid(p)
    aps = profile_aps(fusions, d_model, works, ids, grid, rerank)
    first = next(iter(fusions))
    fused, reranked = np.empty(d_model.shape), np.empty(d_model.shape)
    choices, made = [], {}
    for f in np.unique(fold):
        choice = best_choice(aps, fold != f, grid, p.plateau) or (first, fusions[first][0].weight)
        if choice not in made:
            fusion, d_twodftm = fusions[choice[0]]
            d = replace(fusion, weight=choice[1]).distances(d_model, d_twodftm)
            made[choice] = d, rerank_square(d, rerank.shortlist, rerank.weight)
        rows = fold == f
        fused[rows], reranked[rows] = made[choice][0][rows], made[choice][1][rows]
        choices.append(choice)
    return fused, reranked, choices
