"""Training batches with the tricks on the fly [III-B]: audio cut under the stored frames,
augmented, re-transformed; reproducible per step; exact resume of a prefetching stream."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch
from synth import tone

from coverhunter.features.audio import load_segment
from coverhunter.features.cqt import CQTFrontEnd, extract_cqt
from coverhunter.training.augment import FeatureAugment, overlay_db
from coverhunter.training.augment_audio import AudioAugment
from coverhunter.training.batches import AudioChunks, BatchMaker, BatchStream, OtherWorkAudio
from coverhunter.training.data import ChunkDataset, ChunkLocation
from coverhunter.training.sampler import PKSampler

SR = 16_000
A4, E5 = 440.0, 659.255           # 12 semitones apart would be an octave; these are 7 apart
OFF = dict(speed_prob=0.0, noise_prob=0.0, volume_prob=0.0, pitch_roll_prob=0.0, tempo_prob=0.0,
           mask_prob=0.0)


def _bin(params, hz: float) -> int:
    """The CQT bin of a pitch: fmin · 2^(bin / bins_per_octave)."""
    f = params.features
    return int(round(f.bins_per_octave * np.log2(hz / f.fmin)))


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """20 s: A4 for 8 s, then E5 (a pitch change at a known time), as a FLAC file."""
    audio = np.concatenate([tone(A4, 8.0, SR, 0.3), tone(E5, 12.0, SR, 0.3)])
    path = tmp_path_factory.mktemp("audio") / "rec.flac"
    sf.write(path, audio, SR)
    return path, audio


def _maker(params, path, audio, seed=0, **augment):
    p = dataclasses.replace(params.augment, **{**OFF, **augment})
    front = CQTFrontEnd(params.features)
    feats = extract_cqt([audio], front)                                       # [(T, bins)]
    ds = ChunkDataset(feats, [0], 6.0, 3.0, params.features.frame_rate)     # 6 s chunks
    chunks = AudioChunks({0: path}, SR, params.features.hop_length)
    maker = BatchMaker(ds, seed, audio=AudioAugment.from_params(p, SR), chunks=chunks,
                       front=front, features=FeatureAugment(p, 12))
    return maker, ds


def test_segment_reads_the_stretch_and_resamples(recording, tmp_path):
    path, audio = recording
    np.testing.assert_allclose(load_segment(path, SR, 7.0, 2.0), audio[7 * SR: 9 * SR], atol=1e-4)
    assert len(load_segment(path, SR, 19.0, 5.0)) == SR                      # cut at the end
    low = tmp_path / "8k.wav"
    sf.write(low, tone(A4, 3.0, 8000, 0.3), 8000)
    y = load_segment(low, SR, 1.0, 1.0)                                       # 8 kHz → 16 kHz
    assert len(y) == SR
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.fft.rfftfreq(len(y), 1 / SR)[spectrum.argmax()] - A4) <= 1.0


def test_audio_chunks_cut_the_samples_under_the_frames(params, recording):
    path, audio = recording
    hop = params.features.hop_length                                          # 640 samples
    chunks = AudioChunks({"r": path}, SR, hop)
    loc = ChunkLocation("r", start=50, frames=100, label=0)                   # 2 s .. 6 s
    np.testing.assert_allclose(chunks.read(loc), audio[50 * hop: 150 * hop], atol=1e-4)
    assert len(chunks.read(loc, rate=1.25)) == 125 * hop                      # 5 s for a ×1.25 stretch


def test_tricks_off_gives_the_stored_chunks(params, recording):
    path, audio = recording
    maker, ds = _maker(params, path, audio)
    plain = BatchMaker(ds, 0)(np.array([0, 2, 1]), step=5)
    assert plain.audio_items == 0
    for row, i in enumerate([0, 2, 1]):
        stored = ds[i][0]
        np.testing.assert_array_equal(plain.x[row, : len(stored)].numpy(), stored)
        assert plain.lengths[row] == len(stored)


def test_volume_only_recomputes_the_same_cqt(params, recording):
    """A gain change leaves dB-re-max features unchanged: the re-transformed chunk matches
    the stored one (away from the chunk's edges, where the CQT window sees zeros instead of
    the neighbouring audio), which checks that the audio cut lines up with the frames."""
    path, audio = recording
    maker, ds = _maker(params, path, audio, volume_prob=1.0)
    batch = maker(np.array([2]), step=0)                                      # chunk 6 s .. 12 s
    assert batch.audio_items == 1
    stored = ds[2][0]
    assert batch.lengths[0] == len(stored) == 150
    edge = 13                                                                 # ~0.5 s
    inner = slice(edge, 150 - edge)
    a4, e5 = _bin(params, A4), _bin(params, E5)
    got = batch.x[0, inner].numpy()
    np.testing.assert_allclose(got[:, [a4, e5]], stored[inner][:, [a4, e5]], atol=1.0)
    # the pitch change at 8 s is 2 s = 50 frames into the chunk, in both
    assert (got[: 50 - edge - 3].argmax(1) == a4).all()
    assert (got[50 - edge + 3:].argmax(1) == e5).all()


def test_speed_change_keeps_pitch_and_moves_the_change(params, recording):
    """×2 speed: the 6 s chunk from 0 s reads 12 s of audio and plays it in 6 s, so the
    change at 8 s lands at 4 s (100 frames); both tones keep their CQT bin."""
    path, audio = recording
    maker, ds = _maker(params, path, audio, speed_prob=1.0, speed_rate=[2.0, 2.0])
    batch = maker(np.array([0]), step=0)
    assert batch.audio_items == 1 and batch.lengths[0] == 150
    peaks = batch.x[0, :150].numpy().argmax(1)
    a4, e5 = _bin(params, A4), _bin(params, E5)
    assert (peaks[10:92] == a4).all()
    assert (peaks[108:140] == e5).all()


def test_tempo_change_in_the_cqt_moves_the_change_like_the_audio_speed_change(params, recording):
    """The CQT-domain tempo trick at ×2: the same 6 s chunk is every second stored frame of
    0–12 s (exact at whole positions), so the change at 8 s lands at 4 s, as with audio."""
    path, audio = recording
    maker, ds = _maker(params, path, audio, tempo_prob=1.0, tempo_rate=[2.0, 2.0])
    batch = maker(np.array([0]), step=0)
    stored = ds.features[0]
    assert batch.audio_items == 0 and batch.lengths[0] == 150
    np.testing.assert_allclose(batch.x[0, :150].numpy(), stored[0:300:2], atol=1e-6)
    peaks = batch.x[0, :150].numpy().argmax(1)
    assert (peaks[10:92] == _bin(params, A4)).all()
    assert (peaks[108:140] == _bin(params, E5)).all()


def test_tempo_change_slower_interpolates_and_ends_with_the_recording(params, recording):
    """×0.5: 3 s of frames played over 6 s, odd frames the mean of their neighbours; a chunk
    whose stretch would pass the recording's end is cut where the frames end."""
    path, audio = recording
    maker, ds = _maker(params, path, audio, tempo_prob=1.0, tempo_rate=[0.5, 0.5])
    stored = ds.features[0]
    first = maker(np.array([0]), step=0).x[0].numpy()                      # (150, bins)
    np.testing.assert_allclose(first[0::2], stored[0:75], atol=1e-6)
    np.testing.assert_allclose(first[1:-1:2], (stored[0:74] + stored[1:75]) / 2, atol=1e-5)
    fast = dataclasses.replace(maker.features.p, tempo_rate=(2.0, 2.0))
    maker.features.p = fast
    last = len(ds) - 1                                                    # starts 6 s before the end
    batch = maker(np.array([last]), step=0)
    assert batch.lengths[0] == (len(stored) - ds.start[last] + 1) // 2   # the rest at ×2
    np.testing.assert_allclose(batch.x[0, :int(batch.lengths[0])].numpy(),
                               stored[ds.start[last]::2], atol=1e-6)


def test_batches_are_reproducible_per_step(params, recording):
    path, audio = recording
    maker, _ = _maker(params, path, audio, speed_prob=0.2, noise_prob=0.2, volume_prob=0.2,
                      pitch_roll_prob=1.0, tempo_prob=0.5, mask_prob=0.5, seed=7)
    specs = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    first, again, other = maker(specs, 3), maker(specs, 3), maker(specs, 4)
    torch.testing.assert_close(first.x, again.x, rtol=0, atol=0)
    assert first.audio_items == again.audio_items
    assert not torch.equal(first.x, other.x)
    assert 0 < first.audio_items < len(specs) or 0 < other.audio_items < len(specs)


def test_other_work_noise_never_comes_from_the_same_work(params, tmp_path):
    hop = params.features.hop_length
    paths = {}
    for key, level in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        paths[key] = tmp_path / f"{key}.wav"
        sf.write(paths[key], np.full(4 * SR, level, np.float32), SR)
    other = OtherWorkAudio(AudioChunks(paths, SR, hop), ["a", "b", "c"], [0, 0, 1],
                           [4.0, 4.0, 4.0], seconds=1.0)
    rng = np.random.default_rng(0)
    other.work = 0
    drawn = [other(rng) for _ in range(10)]
    assert all(len(d) == SR and np.allclose(d, 0.3, atol=1e-3) for d in drawn)   # only "c"
    other.work = 1
    levels = {round(float(other(rng).mean()), 1) for _ in range(20)}
    assert levels == {0.1, 0.2}


@pytest.mark.parametrize("ahead", [0, 2])
def test_stream_state_resumes_the_next_unconsumed_batch(ahead):
    labels = np.repeat(np.arange(4), 6)
    recs = np.repeat(np.arange(12), 2)

    def make(specs, step):
        return specs, step

    stream = BatchStream(PKSampler(labels, recs, 2, 2, seed=1), make, 0, ahead)
    consumed = [stream.next() for _ in range(3)]
    state = stream.sampler_state()
    fourth = stream.next()
    stream.close()
    fresh = PKSampler(labels, recs, 2, 2, seed=1)
    fresh.load_state_dict(state)
    resumed = BatchStream(fresh, make, 3, ahead)
    again = resumed.next()
    resumed.close()
    assert [s for _, s in consumed] == [0, 1, 2] and fourth[1] == again[1] == 3
    np.testing.assert_array_equal(fourth[0], again[0])


def test_stage_batch_maker_wires_every_trick(params, tmp_path):
    """stages.train.batch_maker from params: audio steps on every chunk with noise from the
    other work only, then the CQT tricks; tricks off or audio probabilities 0 read no audio."""
    import pandas as pd

    from coverhunter.pipeline.train import batch_maker
    files = []
    for i, hz in enumerate((A4, E5)):
        files.append(tmp_path / f"r{i}.flac")
        sf.write(files[-1], tone(hz, 10.0, SR, 0.3), SR)
    df = pd.DataFrame({"audio_file": [str(f) for f in files], "measured_duration_s": [10.0, 10.0]})
    feats = extract_cqt([sf.read(f, dtype="float32")[0] for f in files], CQTFrontEnd(params.features))
    ds = ChunkDataset(feats, [0, 1], 6.0, 3.0, params.features.frame_rate)
    every = dataclasses.replace(params.augment, speed_prob=1.0, noise_prob=1.0, volume_prob=1.0,
                                noise_coloured_share=0.0, noise_folder_share=0.0,
                                noise_other_work_share=1.0, mask_prob=0.0, pitch_roll_prob=0.0)
    p = dataclasses.replace(params, augment=every)
    specs = np.arange(len(ds))
    batch = batch_maker(p, ds, [0, 1], df, [0, 1], 6.0)(specs, step=0)
    assert batch.audio_items == len(ds) and batch.labels.tolist() == ds.label.tolist()
    # the other work's tone is mixed in: each chunk now holds both pitches
    a4, e5 = _bin(params, A4), _bin(params, E5)
    mid = batch.x[:, 20:130].mean(1)                                          # (B, bins)
    assert (mid[:, a4] > -40).all() and (mid[:, e5] > -40).all()
    stored = ds[0][0][20:130].mean(0)
    assert stored[e5] < -40                                                   # not before mixing
    quiet = dataclasses.replace(params, augment=dataclasses.replace(
        every, speed_prob=0.0, noise_prob=0.0, volume_prob=0.0))
    assert batch_maker(quiet, ds, [0, 1], df, [0, 1], 6.0).audio is None
    off = dataclasses.replace(p, train=dataclasses.replace(p.train, tricks=False))
    plain = batch_maker(off, ds, [0, 1], df, [0, 1], 6.0)
    assert plain.audio is None and plain.features is None


def test_overlay_mixes_another_works_chunk_under_the_peak(params):
    """Two works, a held A4 and a held E5: with the overlay on every chunk at 10 dB, each
    chunk keeps its own pitch as the peak (0 dB) and shows the other work's 10 dB under it;
    a batch of one work alone is left as it was (there is no other work to mix in)."""
    front = CQTFrontEnd(params.features)
    feats = extract_cqt([tone(A4, 12.0, SR, 0.3), tone(E5, 12.0, SR, 0.3)], front)
    ds = ChunkDataset(feats, [0, 1], 6.0, 3.0, params.features.frame_rate)
    p = dataclasses.replace(params.augment, **{**OFF, "overlay_prob": 1.0, "overlay_snr_db": [10.0, 10.0]})
    maker = BatchMaker(ds, 0, features=FeatureAugment(p, 12))
    a4, e5 = _bin(params, A4), _bin(params, E5)
    first = [i for i in range(len(ds)) if ds[i][1] == 0][1]                  # a chunk of A4, 3-9 s
    second = [i for i in range(len(ds)) if ds[i][1] == 1][1]                 # one of E5
    batch = maker(np.array([first, second]), step=0)
    mid = slice(25, 125)                                                      # clear of the tones' edges
    for row, (own, other) in enumerate([(a4, e5), (e5, a4)]):
        x = batch.x[row, mid].numpy()
        assert (x.argmax(1) == own).all()
        np.testing.assert_allclose(x[:, own], 0.0, atol=0.05)
        stored = ds[[first, second][row]][0][mid]
        assert (stored[:, other] < -30).all()                                 # nothing there before
        np.testing.assert_allclose(x[:, other], -10.0, atol=0.3)
    alone = maker(np.array([first, first + 1]), step=0)                     # work 0 only
    np.testing.assert_array_equal(alone.x[0, :150].numpy(), ds[first][0])


def test_overlay_db_adds_powers() -> None:
    """Known answers: two equal powers add to +3.01 dB, so after re-referencing to the
    mixture's peak a bin where only one of them plays reads -3.01 dB; a peak mixed 10 dB under
    reads -10 dB less the lift of the mixture's peak; the floor is kept; a shorter overlay
    repeats from its start."""
    floor = -80.0
    x = np.full((4, 3), floor, np.float32)
    x[:, 0] = 0.0
    other = np.full((2, 3), floor, np.float32)
    other[0, 0] = 0.0                          # frame 0 (and 2): the same bin as x's peak
    other[1, 1] = 0.0                          # frame 1 (and 3): another bin
    y = overlay_db(x, other, 0.0)
    np.testing.assert_allclose(y[:, 0], [0.0, -10 * np.log10(2), 0.0, -10 * np.log10(2)], atol=1e-4)
    np.testing.assert_allclose(y[[1, 3], 1], -10 * np.log10(2), atol=1e-4)  # equal powers: each -3 dB
    z = overlay_db(x, other, 10.0)             # the peak is now frame 0's 10·log10(1.1) = +0.41 dB
    lift = 10 * np.log10(1.1)
    np.testing.assert_allclose(z[[1, 3], 1], -10.0 - lift, atol=1e-3)
    np.testing.assert_allclose(z[:, 0], [0.0, -lift, 0.0, -lift], atol=1e-3)
    assert z.min() >= floor and z.dtype == np.float32 and z.shape == x.shape
