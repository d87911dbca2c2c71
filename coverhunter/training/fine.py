"""Training items of the fine model [II-D fine training, III-B multi-length training].

The idea: each aligned chunk pair ``(rec_a @ start_a, rec_b @ start_b)`` found by
:mod:`coverhunter.align.alignment` is a positive pair; both chunks are extended from their aligned
starts to one random length between ``min_s`` and ``max_s`` (cut short where either
recording ends), so the model sees two versions of the same passage, and the other works
of the batch are the negatives. A batch holds P works and ``K / 2`` aligned pairs of each
(K chunks per work), so the joint loss of the coarse model applies unchanged.

Items are addressed by a spec ``(row, side, length_frames)``: the sampler draws specs
(and owns every random draw, so its state resumes a run exactly) and the dataset cuts
the chunk a spec names.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from coverhunter.features.chunking import seconds_to_frames
from coverhunter.training.data import ChunkLocation
from coverhunter.training.sampler import PKSampler


class AlignedChunks:
    """Aligned pairs of an alignment table as chunk pairs of the training features.

    ``features`` maps recording id → ``(frames, bins)``; ``label_of`` maps work id → class.
    ``spec`` ``(row, side, length)`` → ``(features (length', bins), label)``, where
    ``length' <= length`` when the recording ends sooner.
    """

    def __init__(self, alignments: pd.DataFrame, features: dict[str, np.ndarray],
                 label_of: dict[str, int], frame_rate: float):
        if alignments.empty:
            raise ValueError("the alignment table has no aligned chunk pairs: the coarse model "
                             "found no match above align.threshold; train the coarse model "
                             "longer or lower align.threshold")
        missing = sorted((set(alignments["rec_a"]) | set(alignments["rec_b"])) - set(features))
        if missing:
            raise ValueError(f"aligned recordings without features: {missing[:5]} "
                             "(re-run the extract and align stages)")
        self.features = features
        self.rec = alignments[["rec_a", "rec_b"]].to_numpy()                    # (n, 2)
        starts = alignments[["start_a_s", "start_b_s"]].to_numpy(np.float64)
        self.start = np.rint(starts * frame_rate).astype(np.int64)             # (n, 2) frames
        self.label = alignments["work_id"].map(label_of).to_numpy()            # (n,)
        if np.isnan(self.label.astype(float)).any():
            raise ValueError("the alignment table names works outside the training split")
        self.label = self.label.astype(np.int64)
        # frames available from each side's aligned start to its recording's end
        ends = np.array([[len(features[a]), len(features[b])] for a, b in self.rec])
        self.room = (ends - self.start).min(axis=1)                            # (n,)

    def __len__(self) -> int:
        return len(self.rec)

    def __getitem__(self, spec: Sequence[int]) -> tuple[np.ndarray, int]:
        row, side, length = (int(v) for v in spec)
        s = self.start[row, side]
        feats = self.features[self.rec[row, side]]
        return np.asarray(feats[s: s + min(length, self.room[row])]), int(self.label[row])

    def locate(self, spec: Sequence[int]) -> ChunkLocation:
        """Where the chunk of ``spec`` lies: recording id, first frame, frames, label."""
        row, side, length = (int(v) for v in spec)
        return ChunkLocation(str(self.rec[row, side]), int(self.start[row, side]),
                             min(length, int(self.room[row])), int(self.label[row]))


class AlignedPairSampler:
    """P works × K/2 aligned pairs per batch, each pair at one random length.

    ``sample()`` returns specs ``(P·K, 3)``: rows ``(pair row, side, length_frames)``,
    the two sides of a pair next to each other, grouped by work.
    """

    def __init__(self, data: AlignedChunks, p: int, k: int, min_s: float, max_s: float,
                 frame_rate: float, seed: int):
        if k < 2 or k % 2:
            raise ValueError(f"versions_per_work must be even for pair batches, got {k}")
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        # one PK draw over pairs: a "recording" of the PK sampler is an aligned pair here
        self.pairs = PKSampler(data.label, np.arange(len(data)), p, k // 2, seed)
        self.min_len = seconds_to_frames(min_s, frame_rate)
        self.max_len = seconds_to_frames(max_s, frame_rate)

    def sample(self) -> np.ndarray:
        rows = self.pairs.sample()                                             # (P·K/2,)
        lengths = self.pairs.rng.integers(self.min_len, self.max_len + 1, len(rows))
        specs = np.empty((2 * len(rows), 3), dtype=np.int64)
        specs[:, 0] = np.repeat(rows, 2)
        specs[:, 1] = np.tile([0, 1], len(rows))
        specs[:, 2] = np.repeat(lengths, 2)
        return specs

    def state_dict(self) -> dict:
        return self.pairs.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.pairs.load_state_dict(state)
