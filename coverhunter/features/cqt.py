"""CQT front end [III-A]: 96 bins, 12 per octave, hop 0.04 s (25 frames/s), log-magnitude.

The transform is nnAudio's ``CQT1992v2`` (a bank of convolution kernels) or, with
``features.cqt: multirate``, :class:`~coverhunter.features.multirate.MultirateCQT` (the
same bins octave by octave); both run batched on CPU or CUDA. Each recording is centred with zero padding, which makes a
recording's frames identical whether it is transformed alone or inside a padded batch.
The log-magnitude is in dB relative to the recording's own maximum and floored at
``-top_db``, which makes features independent of the recording's gain.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from nnAudio.features.cqt import CQT1992v2
from torch import nn

from coverhunter.features.multirate import MultirateCQT
from coverhunter.params import FeatureParams


class CQTFrontEnd(nn.Module):
    """Audio ``(batch, samples)`` → log-CQT ``(batch, frames, bins)`` in dB re max."""

    def __init__(self, p: FeatureParams):
        super().__init__()
        self.p = p
        if p.cqt == "multirate":        # the same bins, hop and scale, octave by octave
            self.cqt = MultirateCQT(p)
        else:
            self.cqt = CQT1992v2(
                sr=p.sample_rate, hop_length=p.hop_length, fmin=p.fmin, n_bins=p.n_bins,
                bins_per_octave=p.bins_per_octave, center=True, pad_mode="constant",
                output_format="Magnitude", verbose=False)

    def n_frames(self, n_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames of a centred transform of ``n_samples`` samples."""
        return n_samples // self.p.hop_length + 1

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        # audio: (batch, samples) zero-padded; lengths: (batch,) valid samples
        batch, n = audio.shape
        if lengths is None:
            lengths = torch.full((batch,), n, dtype=torch.long, device=audio.device)
        mag = self.cqt(audio.float())                                    # (B, bins, frames)
        db = 20.0 * torch.log10(mag.clamp_min(self.p.amin)).transpose(1, 2)  # (B, T, bins)
        frames = self.n_frames(lengths.to(audio.device))                 # (B,)
        valid = torch.arange(db.shape[1], device=db.device)[None, :] < frames[:, None]
        ref = db.masked_fill(~valid[..., None], float("-inf")).amax(dim=(1, 2))  # (B,)
        db = (db - ref[:, None, None]).clamp_min(-self.p.top_db)
        return db.masked_fill(~valid[..., None], -self.p.top_db)


def batches_by_duration(lengths: Sequence[int], max_samples: int) -> Iterator[list[int]]:
    """Group indices, in order, so that each group's padded size stays under ``max_samples``.

    A single item longer than the budget forms a group of its own.
    """
    group: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if group and max(longest, n) * (len(group) + 1) > max_samples:
            yield group
            group, longest = [], 0
        group.append(i)
        longest = max(longest, n)
    if group:
        yield group


def extract_cqt(audios: Sequence[np.ndarray], front: CQTFrontEnd,
                device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Log-CQT of each mono signal: a list of float32 arrays ``(frames, bins)``.

    Signals are transformed in zero-padded batches of at most ``features.batch_seconds``
    of audio (padded size), on ``device``.
    """
    front = front.to(device)
    budget = int(front.p.batch_seconds * front.p.sample_rate)
    out: list[np.ndarray | None] = [None] * len(audios)
    for group in batches_by_duration([len(a) for a in audios], budget):
        lengths = torch.tensor([len(audios[i]) for i in group])
        batch = torch.zeros(len(group), int(lengths.max()))
        for row, i in enumerate(group):
            batch[row, : len(audios[i])] = torch.from_numpy(np.asarray(audios[i], np.float32))
        feats = front(batch.to(device), lengths).cpu()
        for row, i in enumerate(group):
            out[i] = feats[row, : front.n_frames(int(lengths[row]))].numpy()
    return out  # type: ignore[return-value]
