import torch

from coverhunter.augment import random_pitch_roll, roll_pitch


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
