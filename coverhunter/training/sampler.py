"""P-works × K-versions batch sampler [II-C: the triplet loss mines inside the batch].

Each batch draws P works, then K recordings (versions) of each work, then one chunk of each
chosen recording. Recordings are drawn without replacement while a work has enough of them,
so a batch holds as many distinct versions as the catalogue allows. The sampler owns its
random generator and exposes its state, so a resumed run draws the same batches as an
uninterrupted one.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PKSampler:
    """Infinite stream of index batches of size ``P·K`` over chunk items."""

    def __init__(self, labels: Sequence[int], recordings: Sequence[int], p: int, k: int, seed: int):
        labels, recordings = np.asarray(labels), np.asarray(recordings)
        if labels.shape != recordings.shape:
            raise ValueError("labels and recordings must have one entry per chunk item")
        # work → recording → chunk indices
        self.tree: dict[int, list[np.ndarray]] = {}
        for work in np.unique(labels):
            in_work = np.flatnonzero(labels == work)
            recs = recordings[in_work]
            self.tree[int(work)] = [in_work[recs == r] for r in np.unique(recs)]
        self.works = np.array(sorted(self.tree))
        if len(self.works) < 2:
            raise ValueError("training needs at least two works (the triplet loss needs negatives)")
        self.p, self.k = min(p, len(self.works)), k
        self.rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        """One batch of chunk indices, shape ``(P·K,)``, grouped by work."""
        batch = []
        for work in self.rng.choice(self.works, size=self.p, replace=False):
            recs = self.tree[int(work)]
            picks = self.rng.choice(len(recs), size=self.k, replace=len(recs) < self.k)
            batch.extend(int(self.rng.choice(recs[r])) for r in picks)
        return np.asarray(batch)

    def state_dict(self) -> dict:
        state = self.rng.bit_generator.state
        # 128-bit integers are kept as strings so the checkpoint loads with weights_only
        return {"state": {k: str(v) for k, v in state["state"].items()},
                "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = {
            "bit_generator": self.rng.bit_generator.state["bit_generator"],
            "state": {k: int(v) for k, v in state["state"].items()},
            "has_uint32": state["has_uint32"], "uinteger": state["uinteger"]}
