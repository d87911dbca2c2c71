"""Training-free baselines, computed from the stored log-CQT features (no model, no training).

They are reference rows beside the trained models in the ``evaluate`` stage and
``coverhunter score``: a trained model that does not beat them has learned little. Both turn a
recording into vectors that ``coverhunter.retrieval.evaluation`` compares like chunk
embeddings (cosine distance, the smallest over vector pairs):

- ``2dftm`` — the 2-D Fourier transform magnitude of chroma patches (Bertin-Mahieux &
  Ellis, "Large-scale cover song recognition using the 2D Fourier transform magnitude",
  ISMIR 2012). The log-CQT is turned back into linear magnitude and folded into 12 pitch
  classes (chroma); each frame is divided by its maximum and raised to
  ``baselines.chroma_power``, then frames are averaged over blocks of
  ``baselines.block_frames`` (a fixed rate stands in for the paper's beats). Patches of
  ``patch_frames`` blocks every ``patch_hop`` blocks go through a 2-D FFT, whose magnitude
  is exactly invariant to a circular rotation of the pitch classes (a key change) and,
  within a patch, to a circular time shift. The median over patches, raised to
  ``baselines.power``, flattened and L2-normalised, is the recording's single vector.
- ``chroma`` — key-invariant mean chroma: the mean of the same normalised chroma frames,
  centred (its mean over the pitch classes removed) and given in its 12 rotations (one per
  key), so the track distance (smallest cosine distance over vector pairs) is the best
  match over the 12 transpositions.

The constants come in profiles (params.yaml ``baselines:``): ``classic``, the published 2DFTM
settings (12 s patches of plain chroma), and ``tuned``, tuned by measurement on the val and
train splits of the demo catalogue (never on a test set): short patches of high-contrast
chroma, which is close to a transcription of the predominant pitch and suits melody-led
recordings. Each method and profile is one row: ``baseline_2dftm`` and ``baseline_chroma``
for ``classic``, ``baseline_2dftm_tuned`` and so on for the others.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from coverhunter.params import BaselineParams

BASELINES = ("2dftm", "chroma")
ROW_PREFIX = "baseline_"    # metrics.json row name: baseline_2dftm, baseline_chroma
CLASSIC = "classic"         # the profile whose rows carry no suffix


def fold_chroma(features: np.ndarray, bins_per_octave: int = 12) -> np.ndarray:
    """Log-CQT ``(frames, bins)`` in dB → chroma ``(frames, bins_per_octave)``: linear
    magnitude ``10^(dB/20)`` summed over octaves; bin ``b`` lands in pitch class
    ``b % bins_per_octave`` (class 0 is the pitch of the lowest bin, C with fmin C1)."""
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be (frames, bins), got shape {x.shape}")
    mag = np.power(10.0, x / 20.0, dtype=np.float32)
    pad = -x.shape[1] % bins_per_octave              # a partial top octave: zero bins
    mag = np.pad(mag, ((0, 0), (0, pad)))
    return mag.reshape(len(mag), -1, bins_per_octave).sum(axis=1)


def block_average(x: np.ndarray, block: int) -> np.ndarray:
    """Mean over consecutive blocks of ``block`` rows (the last block may be shorter)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    starts = np.arange(0, len(x), block)
    sums = np.add.reduceat(np.asarray(x, dtype=np.float64), starts, axis=0)
    sizes = np.diff(np.append(starts, len(x)))
    return (sums / sizes[:, None]).astype(np.float32)


def chroma_frames(features: np.ndarray, p: BaselineParams, bins_per_octave: int = 12) -> np.ndarray:
    """Chroma of every frame divided by its max and raised to ``chroma_power``:
    ``(frames, bins_per_octave)`` in [0, 1]. A high power keeps little more than each
    frame's predominant pitch class (the melody note), which suits melody-led covers."""
    c = fold_chroma(features, bins_per_octave)
    c = c / np.maximum(c.max(axis=1, keepdims=True), 1e-12)
    return np.power(c, p.chroma_power, dtype=np.float32)


def patches(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``(n, length, ...)`` windows of ``x`` every ``hop`` rows; a recording shorter than
    one window is tiled (repeated) up to ``length`` rows."""
    if len(x) == 0:
        raise ValueError("cannot cut patches from an empty recording")
    if len(x) < length:
        x = np.concatenate([x] * -(-length // len(x)))[:length]
    starts = np.arange(0, len(x) - length + 1, hop)
    return np.stack([x[s: s + length] for s in starts])


def fft2_magnitude(chroma: np.ndarray, p: BaselineParams) -> np.ndarray:
    """The 2DFTM vector ``(patch_frames * bins,)`` of a chroma-block sequence: median over
    patches of ``|FFT2(patch)|``, raised to ``power``, L2-normalised."""
    mag = np.abs(np.fft.fft2(patches(chroma, p.patch_frames, p.patch_hop), axes=(1, 2)))
    v = np.power(np.median(mag, axis=0), p.power).ravel()
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def twodftm(features: np.ndarray, p: BaselineParams, bins_per_octave: int = 12) -> np.ndarray:
    """``2dftm`` of one recording: ``(1, D)`` (one "chunk" for ``score_set``)."""
    blocks = block_average(chroma_frames(features, p, bins_per_octave), p.block_frames)
    return fft2_magnitude(blocks, p)[None, :]


def key_invariant_chroma(features: np.ndarray, p: BaselineParams,
                         bins_per_octave: int = 12) -> np.ndarray:
    """``chroma`` of one recording: the centred mean of :func:`chroma_frames` in all its rotations,
    ``(bins_per_octave, bins_per_octave)`` (row k is rolled by k classes)."""
    m = chroma_frames(features, p, bins_per_octave).mean(axis=0)
    m = m - m.mean()
    return np.stack([np.roll(m, k) for k in range(bins_per_octave)]).astype(np.float32)


METHODS: dict[str, Callable[[np.ndarray, BaselineParams, int], np.ndarray]] = {
    "2dftm": twodftm, "chroma": key_invariant_chroma}


def baseline_vectors(name: str, features: Sequence[np.ndarray], p: BaselineParams,
                     bins_per_octave: int = 12) -> list[np.ndarray]:
    """One ``(n_vectors, D)`` array per recording for the baseline ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return [METHODS[name](f, p, bins_per_octave) for f in features]


def row_name(method: str, profile: str) -> str:
    """metrics.json row of a method under a profile: ``baseline_2dftm`` (classic),
    ``baseline_2dftm_tuned``."""
    return ROW_PREFIX + method + ("" if profile == CLASSIC else f"_{profile}")
