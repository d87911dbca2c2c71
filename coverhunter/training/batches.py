"""Training batches with the tricks drawn anew every time [III-B, "augmentation during
training"].

The paper augments the audio *before* the CQT and extracts features on the fly, so a
chunk seen twice is heard differently. :class:`BatchMaker` turns one batch of sampler
specs into model input:

1. for each chunk, :class:`~coverhunter.training.augment_audio.AudioAugment` draws its plan (speed,
   noise, volume, each with its own probability); a chunk with no audio step keeps its
   stored features, the others are cut from the audio (:class:`AudioChunks`: the same
   stretch, ``rate`` times longer before a speed change so that it plays as long as the
   stored chunk), transformed, and their CQT computed together in one padded batch on the
   training device (:class:`~coverhunter.features.cqt.CQTFrontEnd`);
2. a chunk drawn for a tempo change (``augment.tempo_prob``, no audio step) is cut ``rate``
   times longer from its recording's stored frames and resampled in time to its length
   (:func:`~coverhunter.training.augment.stretch_time`);
3. a chunk drawn for an overlay (``augment.overlay_prob``) gets another work's chunk of the
   same batch mixed in, lowered by ``augment.overlay_snr_db`` (:func:`~coverhunter.training.augment.overlay_db`:
   powers added in the dB domain, as the paper's noise mixing with another recording
   would give, without the audio work);
4. the padded batch gets the other CQT-domain tricks (:class:`~coverhunter.training.augment.FeatureAugment`:
   pitch roll, SpecAugment masks that respect each chunk's length).

Multi-length chunks (the fine model's 15–45 s) are zero-padded with lengths the model
masks. Every random draw of batch ``step`` comes from generators seeded by
``(seed, step)``, so batches do not depend on timing or threads, and a resumed run
rebuilds the same batches. :class:`BatchStream` builds the next batches on one
background thread while the model trains on the current one.

An augmented chunk's dB are relative to its own maximum, a stored one's to its
recording's; the model's per-chunk input normalisation (``model.input_norm``) removes
such offsets.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch

from coverhunter.features.audio import load_segment
from coverhunter.features.cqt import CQTFrontEnd
from coverhunter.training.augment import FeatureAugment, overlay_db, stretch_time
from coverhunter.training.augment_audio import AudioAugment
from coverhunter.training.data import ChunkLocation, pad_batch


class AudioChunks:
    """The audio under stored feature frames: ``paths[key]`` is a recording's file."""

    def __init__(self, paths: Mapping | Sequence, sample_rate: int, hop_length: int):
        self.paths, self.sample_rate, self.hop = paths, sample_rate, hop_length

    def read(self, loc: ChunkLocation, rate: float = 1.0) -> np.ndarray:
        """The samples from ``loc``'s first frame, ``rate`` × its duration:
        ``(≤ round(frames · hop · rate),)`` float32 (shorter where the file ends)."""
        start_s = loc.start * self.hop / self.sample_rate
        return load_segment(self.paths[loc.recording], self.sample_rate, start_s,
                            loc.frames * self.hop * rate / self.sample_rate)


class OtherWorkAudio:
    """Noise source "another work's recording" [III-B noise mixing, built-in source]:
    called with a generator, returns ``seconds`` from a random point of a random recording
    whose work is not ``self.work`` (set before each chunk is augmented)."""

    def __init__(self, chunks: AudioChunks, keys: Sequence, labels: Sequence[int],
                 durations_s: Sequence[float], seconds: float):
        self.chunks, self.seconds = chunks, seconds
        self.keys, self.labels = list(keys), np.asarray(labels)
        self.durations = np.asarray(durations_s, dtype=float)
        self.work = -1

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        others = np.flatnonzero(self.labels != self.work)
        if len(others) == 0:
            raise ValueError("augment: noise from other works needs at least two training works")
        i = int(rng.choice(others))
        start_s = float(rng.uniform(0.0, max(self.durations[i] - self.seconds, 0.0)))
        start = int(round(start_s * self.chunks.sample_rate / self.chunks.hop))
        frames = int(np.ceil(self.seconds * self.chunks.sample_rate / self.chunks.hop))
        return self.chunks.read(ChunkLocation(self.keys[i], start, frames, -1))


TEMPO_STREAM = 1   # the tempo draws' own random stream beside the audio tricks' (seed, step)
OVERLAY_STREAM = 2  # and the overlay draws' own


class Batch(NamedTuple):
    x: torch.Tensor          # (B, T, bins) log-CQT, zero-padded
    lengths: torch.Tensor    # (B,) valid frames
    labels: torch.Tensor     # (B,) work classes
    audio_items: int         # chunks whose audio was augmented and re-transformed


def step_seed(seed: int, step: int) -> int:
    """A 63-bit seed for batch ``step`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0] >> 1)


class BatchMaker:
    """Sampler specs → :class:`Batch` on the CPU, tricks applied when ``tricks`` is on.

    ``dataset[spec]`` gives a chunk's stored features and label,
    ``dataset.locate(spec)`` its place (:class:`~coverhunter.training.data.ChunkLocation`) and
    ``dataset.features[place.recording]`` its recording's frames (for the tempo change).
    ``audio`` (with ``chunks``, ``front`` and ``other``) enables the audio tricks and
    ``features`` the CQT-domain ones; either may be None.
    """

    def __init__(self, dataset: Any, seed: int, audio: AudioAugment | None = None,
                 chunks: AudioChunks | None = None, front: CQTFrontEnd | None = None,
                 other: OtherWorkAudio | None = None, features: FeatureAugment | None = None,
                 device: torch.device | str = "cpu"):
        if audio is not None and (chunks is None or front is None):
            raise ValueError("audio tricks need the recordings' audio and a CQT front end")
        self.dataset, self.seed = dataset, seed
        self.audio, self.chunks, self.other, self.features = audio, chunks, other, features
        self.front = front.to(device) if front is not None else None
        self.device = torch.device(device)

    def __call__(self, specs: Sequence, step: int) -> Batch:
        items = [self.dataset[s] for s in specs]
        chunks = [c for c, _ in items]                                  # [(T_i, bins)]
        labels = [label for _, label in items]                          # [B] work classes
        if self.features is not None and self.features.p.tempo_prob > 0:
            self._tempo(specs, chunks, step)
        audio_items = self._audio_tricks(specs, chunks, step) if self.audio is not None else 0
        if self.features is not None and self.features.p.overlay_prob > 0:
            self._overlay(np.array(labels), chunks, step)
        x, lengths = pad_batch(chunks)                                  # (B, T, bins), (B,)
        if self.features is not None:
            gen = torch.Generator().manual_seed(step_seed(self.seed, step))
            x = self.features(x, lengths, gen)
        return Batch(x, lengths, torch.tensor(labels), audio_items)

    def _tempo(self, specs: Sequence, chunks: list[np.ndarray], step: int) -> None:
        """Replace, in place, each chunk drawn for a tempo change by its stretch of the
        recording's frames played ``rate`` times faster (as long as the chunk where the
        recording allows)."""
        p = self.features.p
        rng = np.random.default_rng([self.seed, step, TEMPO_STREAM])
        drawn = rng.random(len(specs)) < p.tempo_prob                     # (B,)
        rates = np.exp(rng.uniform(*np.log(p.tempo_rate), len(specs)))   # (B,) log-uniform
        for row in np.flatnonzero(drawn):
            loc = self.dataset.locate(specs[row])
            frames = self.dataset.features[loc.recording]                # (T_rec, bins)
            cut = frames[loc.start: loc.start + max(1, int(round(loc.frames * rates[row])))]
            chunks[row] = stretch_time(cut, float(rates[row]), loc.frames)

    def _overlay(self, labels: np.ndarray, chunks: list[np.ndarray], step: int) -> None:
        """Mix into each chunk drawn for an overlay, in place, a chunk of another work of the
        batch (as it was before any overlay), lowered by ``snr`` dB."""
        p = self.features.p
        rng = np.random.default_rng([self.seed, step, OVERLAY_STREAM])
        drawn = rng.random(len(chunks)) < p.overlay_prob                   # (B,)
        partner_u = rng.random(len(chunks))                                # (B,)
        snr = rng.uniform(*p.overlay_snr_db, len(chunks))                  # (B,) dB
        before = list(chunks)
        for row in np.flatnonzero(drawn):
            others = np.flatnonzero(labels != labels[row])
            if len(others):
                other = before[others[int(partner_u[row] * len(others))]]
                chunks[row] = overlay_db(before[row], other, float(snr[row]))

    def _audio_tricks(self, specs: Sequence, chunks: list[np.ndarray], step: int) -> int:
        """Replace, in place, each chunk drawn for an audio step by the CQT of its
        augmented audio; returns how many were replaced."""
        rng = np.random.default_rng([self.seed, step])
        rows, signals, frames = [], [], []
        for row, spec in enumerate(specs):
            plan = self.audio.plan(rng)
            if plan.speed_rate is None and plan.snr_db is None and plan.volume_db is None:
                continue
            loc = self.dataset.locate(spec)
            clip = self.chunks.read(loc, plan.speed_rate or 1.0)
            if self.other is not None:
                self.other.work = loc.label
            y, _ = self.audio.apply(clip, plan, rng)                    # (≈ frames · hop,)
            rows.append(row), signals.append(y), frames.append(loc.frames)
        if not rows:
            return 0
        lengths = torch.tensor([len(y) for y in signals])               # (n,)
        audio = torch.zeros(len(signals), int(lengths.max()))           # (n, samples)
        for i, y in enumerate(signals):
            audio[i, : len(y)] = torch.from_numpy(y)
        feats = self.front(audio.to(self.device), lengths).cpu()        # (n, T', bins)
        n_frames = self.front.n_frames(lengths)
        for i, row in enumerate(rows):
            keep = min(int(n_frames[i]), frames[i])
            chunks[row] = feats[i, :keep].numpy()
        return len(rows)


class _Done(Future):
    """A future that already holds its result (no background thread)."""

    def __init__(self, value: Any):
        super().__init__()
        self.set_result(value)


class BatchStream:
    """Batches for steps ``start_step, start_step + 1, ...``, built ``ahead`` batches in
    advance on one background thread (0: in the caller's thread).

    :meth:`sampler_state` is the sampler's state before the next batch to be consumed:
    the state a checkpoint stores, so a resumed run draws exactly the batches an
    uninterrupted one would have, however far ahead the stream was.
    """

    def __init__(self, sampler: Any, make: Callable[[Sequence, int], Batch],
                 start_step: int, ahead: int):
        self.sampler, self.make, self.step = sampler, make, start_step
        self.ahead = ahead
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="batches") if ahead > 0 else None
        self.pending: deque[tuple[dict, Future]] = deque()

    def _submit(self) -> None:
        state, specs = self.sampler.state_dict(), self.sampler.sample()
        job = (self.pool.submit(self.make, specs, self.step) if self.pool is not None
               else _Done(self.make(specs, self.step)))
        self.pending.append((state, job))
        self.step += 1

    def next(self) -> Batch:
        while len(self.pending) <= self.ahead:
            self._submit()
        return self.pending.popleft()[1].result()

    def sampler_state(self) -> dict:
        return self.pending[0][0] if self.pending else self.sampler.state_dict()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
