"""Training tricks [III-B]: audio (speed, noise, volume) and CQT (roll, masks), known answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from coverhunter.features.audio import AudioDecodeError
from coverhunter.training.augment import FeatureAugment, apply_masks, draw_masks, random_pitch_roll, roll_pitch
from coverhunter.training.augment_audio import AudioAugment, NoiseSource, change_speed

SR = 16_000
OFF = dict(speed_prob=0.0, noise_prob=0.0, volume_prob=0.0)


def _tone(seconds: float = 2.0, hz: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spectrum.argmax()])


def _audio_aug(params, other_works=None, **override) -> AudioAugment:
    p = dataclasses.replace(params.augment, **{**OFF, **override})
    return AudioAugment.from_params(p, SR, other_works)


# ---- audio domain ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_noise_is_mixed_at_the_drawn_snr(params, seed):
    x = _tone()
    y, rec = _audio_aug(params, noise_prob=1.0)(x, np.random.default_rng(seed))
    assert rec.speed_rate is None and rec.volume_db is None and rec.noise_source.startswith("coloured")
    assert -10.0 <= rec.snr_db <= 30.0
    added = y.astype(np.float64) - x
    measured = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(added**2))
    assert measured == pytest.approx(rec.snr_db, abs=0.1)


@pytest.mark.parametrize("seed", range(4))
def test_volume_changes_the_rms_by_the_drawn_db(params, seed):
    x = _tone()
    y, rec = _audio_aug(params, volume_prob=1.0)(x, np.random.default_rng(seed))
    assert -6.0 <= rec.volume_db <= 0.0 and rec.snr_db is None and rec.speed_rate is None
    rms = lambda a: np.sqrt(np.mean(a.astype(np.float64) ** 2))
    assert 20 * np.log10(rms(y) / rms(x)) == pytest.approx(rec.volume_db, abs=0.01)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_speed_change_keeps_the_pitch(rate):
    x = _tone(2.0, 440.0)
    y = change_speed(x, rate)
    assert y.dtype == np.float32
    assert abs(len(y) - round(len(x) / rate)) <= 2
    assert _peak_hz(y) == pytest.approx(440.0, abs=2.0)   # resampling would give 352 / 550 Hz


def test_speed_step_sets_the_length_from_the_drawn_rate(params):
    x = _tone(3.0)
    for seed in range(3):
        y, rec = _audio_aug(params, speed_prob=1.0)(x, np.random.default_rng(seed))
        lo, hi = params.augment.speed_rate
        assert lo <= rec.speed_rate <= hi
        assert abs(len(y) - round(len(x) / rec.speed_rate)) <= 2


def test_probability_zero_is_identity_and_one_always_applies(params):
    x = _tone(1.0)
    for seed in range(10):
        y, rec = _audio_aug(params)(x, np.random.default_rng(seed))
        np.testing.assert_array_equal(y, x)
        assert rec.as_dict() == dict(speed_rate=None, snr_db=None, volume_db=None, noise_source=None)
        _, rec = _audio_aug(params, speed_prob=1.0, noise_prob=1.0, volume_prob=1.0)(
            x, np.random.default_rng(seed))
        assert None not in rec.as_dict().values()


def test_audio_augment_is_reproducible(params):
    aug = _audio_aug(params, speed_prob=0.7, noise_prob=0.7, volume_prob=0.7)
    x = _tone(1.0)
    a, rec_a = aug(x, np.random.default_rng(7))
    b, rec_b = aug(x, np.random.default_rng(7))
    c, rec_c = aug(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert rec_a == rec_b and rec_a != rec_c
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_silent_signal_gets_no_noise(params):
    x = np.zeros(SR, dtype=np.float32)
    y, rec = _audio_aug(params, noise_prob=1.0)(x, np.random.default_rng(0))
    assert rec.snr_db is None and rec.noise_source is None and not np.any(y)


def _write_noise_folder(folder, tones=(1000.0, 2500.0), sr=8000):
    (folder / "sub").mkdir(parents=True)
    for i, hz in enumerate(tones):   # at 8 kHz: decoding resamples them to 16 kHz
        sf.write(folder / ("sub" if i else "") / f"n{i}.wav", _tone(0.5, hz, sr), sr)
    (folder / "README.txt").write_text("not audio, skipped")


def test_noise_folder_files_are_decoded_and_looped(params, tmp_path):
    _write_noise_folder(tmp_path)
    src = NoiseSource(SR, (0.0, 2.0), coloured_share=0.0, folder_share=1.0,
                      other_work_share=0.0, noise_dir=tmp_path)
    assert [f.name for f in src.files] == ["n0.wav", "n1.wav"]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        noise, label = src.draw_with_source(rng, 3 * SR)   # 3 s from 0.5 s files: looped
        assert noise.shape == (3 * SR,) and label in ("folder:n0.wav", "folder:n1.wav")
        assert _peak_hz(noise) == pytest.approx(1000.0 if label.endswith("n0.wav") else 2500.0, abs=3)
        seen.add(label)
    assert len(seen) == 2


def test_noise_folder_errors_name_the_folder(tmp_path):
    def source(folder):
        return NoiseSource(SR, (0.0, 2.0), 0.5, 0.5, 0.0, noise_dir=folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"augment.noise_dir: {empty} holds no audio"):
        source(empty)
    with pytest.raises(ValueError, match="is not a folder"):
        source(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(AudioDecodeError, match=f"augment.noise_dir {bad}.*broken.wav"):
        source(bad)


def test_other_work_audio_is_a_window_of_a_given_recording():
    ramp = np.arange(1, 5 * SR + 1, dtype=np.float32)    # unique values: a window is findable
    src = NoiseSource(SR, (0.0, 2.0), 0.0, 0.0, 1.0, other_works=[ramp])
    noise, label = src.draw_with_source(np.random.default_rng(3), SR)
    start = int(noise[0]) - 1
    assert label == "other_work"
    np.testing.assert_array_equal(noise, ramp[start:start + SR])
    calls = []
    provider = lambda rng: calls.append(rng) or ramp
    NoiseSource(SR, (0.0, 2.0), 0.0, 0.0, 1.0, other_works=provider).draw(np.random.default_rng(0), 10)
    assert len(calls) == 1 and isinstance(calls[0], np.random.Generator)


def test_shares_of_absent_sources_go_to_the_others(params):
    rng = np.random.default_rng(0)
    only_coloured = NoiseSource.from_params(params.augment, SR)       # no folder, no provider
    assert {only_coloured.draw_with_source(rng, 100)[1].split(":")[0] for _ in range(50)} == {"coloured"}
    src = NoiseSource(SR, (0.0, 2.0), 0.3, 0.4, 0.3, other_works=[_tone(1.0)])  # folder absent
    labels = [src.draw_with_source(rng, 100)[1] for _ in range(400)]
    assert 0.4 < labels.count("other_work") / 400 < 0.6                       # 0.3 / (0.3 + 0.3)
    with pytest.raises(ValueError, match="no noise source with a positive share"):
        NoiseSource(SR, (0.0, 2.0), 0.0, 1.0, 0.0)                           # folder share, no folder


def test_augment_params_are_validated(params):
    a = params.augment
    assert (a.snr_db, a.volume_db) == ((-10.0, 30.0), (-6.0, 0.0))           # [III-B]
    for bad, key in [(dict(snr_db=[30.0, -10.0]), "augment.snr_db"),
                     (dict(mask_prob=1.5), "augment.mask_prob"),
                     (dict(noise_folder_share=0.9), "augment.noise_\\*_share"),
                     (dict(speed_rate=[0.0, 1.2]), "augment.speed_rate"),
                     (dict(tempo_rate=[0.0, 1.2]), "augment.tempo_rate"),
                     (dict(tempo_prob=2.0), "augment.tempo_prob"),
                     (dict(time_masks=-1), "augment.time_masks"),
                     (dict(mask_fill="zero"), "augment.mask_fill")]:
        with pytest.raises(ValueError, match=key):
            dataclasses.replace(a, **bad)
    assert dataclasses.replace(a, noise_dir="").noise_dir is None


# ---- feature domain: pitch roll -------------------------------------------------------

def test_roll_moves_a_peak_by_the_shift_and_wraps():
    x = torch.zeros(2, 3, 96)
    x[:, :, 45] = 1.0                                   # A4 in the default CQT
    out = roll_pitch(x, torch.tensor([3, -50]))
    assert out[0].argmax(dim=-1).tolist() == [48, 48, 48]     # up 3 semitones
    assert out[1].argmax(dim=-1).tolist() == [91, 91, 91]     # 45 - 50 wraps to 91
    torch.testing.assert_close(out.sum(), x.sum())            # nothing lost


def test_random_roll_is_reproducible_and_bounded():
    x = torch.arange(96.0).expand(64, 1, 96)
    torch.manual_seed(0)
    a = random_pitch_roll(x, 12)
    torch.manual_seed(0)
    b = random_pitch_roll(x, 12)
    torch.testing.assert_close(a, b)
    shifts = (96 - a[:, 0, 0]) % 96                     # bin 0 now holds bin -shift
    shifts = torch.where(shifts > 48, shifts - 96, shifts)
    assert shifts.abs().max() <= 12 and len(set(shifts.tolist())) > 5


def test_zero_range_is_the_identity():
    x = torch.randn(2, 5, 96)
    assert random_pitch_roll(x, 0) is x


def test_roll_probability():
    x = torch.arange(96.0).expand(400, 1, 96)
    assert random_pitch_roll(x, 12, prob=0.0) is x
    g = lambda seed: torch.Generator().manual_seed(seed)
    a = random_pitch_roll(x, 12, prob=0.5, generator=g(1))
    torch.testing.assert_close(a, random_pitch_roll(x, 12, prob=0.5, generator=g(1)))
    assert not torch.equal(a, random_pitch_roll(x, 12, prob=0.5, generator=g(2)))
    unrolled = (a[:, 0, 0] == 0).float().mean()         # skipped (1/2) or drew 0 (1/2 · 1/25)
    assert 0.42 < unrolled < 0.62


# ---- feature domain: masks ------------------------------------------------------------

LENGTHS = torch.tensor([100, 60, 10, 1, 0, 37])


def _features(lengths=LENGTHS, frames=100, bins=96) -> torch.Tensor:
    x = -80.0 * torch.rand(len(lengths), frames, bins, generator=torch.Generator().manual_seed(0))
    pad = torch.arange(frames)[None, :] >= lengths[:, None]
    return x.masked_fill(pad[..., None], -999.0)        # padding far below any valid value


def _mask(generator_seed=0, prob=1.0, lengths=LENGTHS):
    return draw_masks(lengths, 100, 96, prob, time_masks=2, time_mask_max_frames=25,
                      freq_masks=2, freq_mask_max_bins=12,
                      generator=torch.Generator().manual_seed(generator_seed))


@pytest.mark.parametrize("seed", range(5))
def test_masks_stay_inside_each_length_and_within_bounds(seed):
    mask = _mask(seed)
    for b, n in enumerate(LENGTHS.tolist()):
        assert not mask[b, n:].any()                                       # never the padding
        if n == 0:
            continue
        full_frames = int(mask[b, :n].all(dim=1).sum())
        full_bins = int(mask[b, :n].all(dim=0).sum())
        assert 1 <= full_frames <= min(2 * 25, n)                          # time masks, clipped
        assert 1 <= full_bins <= 2 * 12 or (full_frames == n and full_bins == 96)


def test_masked_values_are_the_items_minimum_or_mean():
    x = _features()
    mask = _mask(1)
    out = apply_masks(x, mask, LENGTHS, "min")
    torch.testing.assert_close(out[~mask], x[~mask])                        # the rest untouched
    for b, n in enumerate(LENGTHS.tolist()):
        if n:
            assert (out[b][mask[b]] == x[b, :n].min()).all()               # not the -999 padding
    out = apply_masks(x, mask, LENGTHS, "mean")
    assert torch.allclose(out[0][mask[0]], x[0, :100].mean())


def test_mask_probability_and_reproducibility():
    assert not _mask(0, prob=0.0).any()
    lengths = torch.full((64,), 100)
    assert _mask(0, prob=1.0, lengths=lengths).flatten(1).any(dim=1).all()  # every item
    torch.testing.assert_close(_mask(3), _mask(3))
    assert not torch.equal(_mask(3), _mask(4))
    some = _mask(0, prob=0.5, lengths=lengths).flatten(1).any(dim=1).float().mean()
    assert 0.3 < some < 0.7


def test_feature_augment_applies_roll_then_masks(params):
    x, lengths = _features(), LENGTHS
    off = dataclasses.replace(params.augment, pitch_roll_prob=0.0, mask_prob=0.0)
    assert FeatureAugment(off, 12)(x, lengths) is x
    on = dataclasses.replace(params.augment, pitch_roll_prob=1.0, mask_prob=1.0,
                             mask_fill="min")
    g = lambda: torch.Generator().manual_seed(5)
    out = FeatureAugment(on, 12)(x, lengths, generator=g())
    torch.testing.assert_close(out, FeatureAugment(on, 12)(x, lengths, generator=g()))
    rolled = random_pitch_roll(x, 12, 1.0, generator=g())                    # the same first draws
    changed = out != rolled
    assert changed.any()
    for b, n in enumerate(lengths.tolist()):
        assert n == 0 or (out[b][changed[b]] == rolled[b, :n].amin()).all()  # the item's minimum
    assert (out[x == -999.0] == -999.0).all()                                # padding untouched
