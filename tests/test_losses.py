import math

import pytest
import torch

from coverhunter.training.losses import (
    CenterLoss,
    CoverHunterLoss,
    FocalLoss,
    batch_hard_triplet,
    inverse_frequency_alpha,
)


def test_alpha_is_inverse_class_frequency_with_unit_sample_mean():
    # counts 1, 2, 1 → N=4, C=3: α = 4/(3·n) = 4/3, 2/3, 4/3
    alpha = inverse_frequency_alpha([1, 2, 1])
    assert torch.allclose(alpha, torch.tensor([4 / 3, 2 / 3, 4 / 3]))
    assert torch.isclose((alpha * torch.tensor([1.0, 2.0, 1.0])).sum() / 4, torch.tensor(1.0))


def test_focal_loss_by_hand():
    focal = FocalLoss(inverse_frequency_alpha([1, 2, 1]), gamma=2.0)
    logits = torch.tensor([[0.0, 0.0, 0.0],              # p_0 = 1/3
                           [0.0, math.log(2.0), 0.0]])   # p_1 = 2/4 = 1/2
    labels = torch.tensor([0, 1])
    # sample 1: α=4/3, (1-1/3)^2 = 4/9, -log p = log 3
    # sample 2: α=2/3, (1-1/2)^2 = 1/4, -log p = log 2
    expected = (4 / 3 * 4 / 9 * math.log(3) + 2 / 3 * 1 / 4 * math.log(2)) / 2
    assert focal(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_focal_with_gamma_0_and_unit_alpha_is_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    focal = FocalLoss(torch.ones(5), gamma=0.0)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert focal(logits, labels).item() == pytest.approx(ce.item(), rel=1e-6)


def test_center_loss_by_hand():
    center = CenterLoss(2, 2)
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # 0.5·(1+4) = 2.5 and 0.5·(4+9) = 6.5 → mean 4.5
    assert center(x, torch.tensor([0, 1])).item() == pytest.approx(4.5)


def test_batch_hard_triplet_by_hand():
    s = 1 / math.sqrt(2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # cosine distances: d01=1, d02=1-s, d03=2, d12=1-s, d13=1, d23=1+s
    # anchor 0: d_p=1,   d_n=min(1-s, 2)=1-s   → s + 0.3
    # anchor 1: d_p=1,   d_n=min(1-s, 1)=1-s   → s + 0.3
    # anchor 2: d_p=1+s, d_n=min(1-s, 1-s)     → 2s + 0.3
    # anchor 3: d_p=1+s, d_n=min(2, 1)=1       → s + 0.3
    expected = (3 * (s + 0.3) + (2 * s + 0.3)) / 4
    assert batch_hard_triplet(x, labels, margin=0.3).item() == pytest.approx(expected, rel=1e-6)


def test_triplet_is_zero_beyond_the_margin_and_skips_anchors_without_positive():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])     # anchor 4 has no positive: left out
    assert batch_hard_triplet(x, labels, margin=0.3).item() == pytest.approx(0.0, abs=1e-6)
    # with margin 3 > every d_n - d_p gap, each of the 4 anchors contributes d_p - d_n + 3
    loss = batch_hard_triplet(x, labels, margin=3.0)
    assert 0 < loss.item() < 3.0


def test_total_is_the_weighted_sum(params):
    loss = CoverHunterLoss(params.loss, class_counts=[2, 2], embedding_dim=4)
    torch.manual_seed(1)
    pre, emb, logits = torch.randn(4, 6), torch.randn(4, 4), torch.randn(4, 2)
    labels = torch.tensor([0, 0, 1, 1])
    t = loss(pre, emb, logits, labels)
    assert t.total.item() == pytest.approx(
        1.0 * t.focal.item() + 0.01 * t.center.item() + 0.1 * t.triplet.item(), rel=1e-6)


def test_focal_alpha_none_weighs_every_class_one(params):
    """loss.focal_alpha: none leaves eq. 1 unweighted; inverse_frequency gives α = N/(C·n_c)."""
    import dataclasses

    from coverhunter.training.losses import CoverHunterLoss
    counts = [30, 10]
    plain = CoverHunterLoss(dataclasses.replace(params.loss, focal_alpha="none"), counts, 4)
    weighted = CoverHunterLoss(dataclasses.replace(params.loss, focal_alpha="inverse_frequency"), counts, 4)
    assert plain.focal.alpha.tolist() == [1.0, 1.0]
    assert weighted.focal.alpha.tolist() == pytest.approx([40 / 60, 40 / 20])
    with pytest.raises(ValueError, match="loss.focal_alpha"):
        dataclasses.replace(params.loss, focal_alpha="inverse")
