"""The ResNet-IBN 50 baseline backbone [Table II] (coverhunter/model/resnet_ibn.py)."""
import dataclasses

import pytest
import torch
from torch import nn

from coverhunter.model import CoverHunterNet
from coverhunter.model.resnet_ibn import (
    Bottleneck,
    IBNNorm,
    MaskedBatchNorm2d,
    MaskedInstanceNorm2d,
    ResNetIBN,
    frame_mask,
)
from coverhunter.training.losses import CoverHunterLoss

# ResNet-IBN-a 50 body (stem + 4 stages, no classifier) at width 64, layers [3, 4, 6, 3],
# 1 input channel. Convolutions have no bias; every norm (BatchNorm, or IBN's InstanceNorm
# + BatchNorm halves, both affine) has 2 parameters per channel, so IBN costs nothing.
# A bottleneck with c_in inputs and inner width m (output 4m):
#   conv1 c_in·m + norm 2m + conv2 9m² + norm 2m + conv3 4m² + norm 2·4m = c_in·m + 13m² + 12m
#   a stage's first block also has the projection shortcut c_in·4m + 2·4m.
# stem: 7·7·1·64 + 2·64                                                      =      3,264
# stage 1, m=64:  first (c_in 64)    64·64 + 13·64² + 12·64 + 64·256 + 512    =     75,008
#                 2 × (c_in 256)     2 × (256·64 + 13·64² + 12·64)            =    140,800
# stage 2, m=128: first (c_in 256)   256·128 + 13·128² + 12·128 + 256·512 + 1024 = 379,392
#                 3 × (c_in 512)     3 × (512·128 + 13·128² + 12·128)         =    840,192
# stage 3, m=256: first (c_in 512)   512·256 + 13·256² + 12·256 + 512·1024 + 2048 = 1,512,448
#                 5 × (c_in 1024)    5 × (1024·256 + 13·256² + 12·256)        =  5,585,920
# stage 4, m=512: first (c_in 1024)  1024·512 + 13·512² + 12·512 + 1024·2048 + 4096 = 6,039,552
#                 2 × (c_in 2048)    2 × (2048·512 + 13·512² + 12·512)        =  8,925,184
# total                                                                        = 23,501,760
# Cross-check: torchvision's ResNet-50 has 25,557,032; minus its fc (2048·1000 + 1000) and
# minus the stem's two extra input channels (7·7·2·64 = 6,272) leaves 23,501,760.
RESNET_IBN_50_BODY_PARAMETERS = 23_501_760


def make(tiny, n_classes=5, **model):
    torch.manual_seed(0)
    m = dataclasses.replace(tiny.model, backbone="resnet_ibn", resnet_width=4,
                            resnet_layers=[1, 1, 1, 1], **model)
    return CoverHunterNet(tiny.features.n_bins, m, n_classes)


def test_shapes_and_frame_lengths(tiny):
    net = make(tiny, frame_pool=1).eval()
    x = torch.randn(3, 375, 96)
    out = net(x)
    assert out.pre.shape == (3, 32) and out.embedding.shape == (3, 16) and out.logits.shape == (3, 5)
    h, lengths = net.resnet(x, torch.tensor([375, 200, 9]))
    # ceil(ceil(T/2)/2): 375 → 188 → 94, 200 → 100 → 50, 9 → 5 → 3
    assert h.shape == (3, 94, tiny.model.d_model) and lengths.tolist() == [94, 50, 3]


def test_frame_pooling_then_time_divided_by_4(tiny):
    net = make(tiny, frame_pool=3).eval()
    h, lengths = net.resnet(torch.randn(3, 375, 96), torch.tensor([375, 200, 9]))
    # ceil(T/3) = 125, 67, 3 → ceil(ceil(·/2)/2) = 32, 17, 1
    assert h.shape[1] == 32 and lengths.tolist() == [32, 17, 1]


def test_body_divides_frequency_by_32_and_keeps_time_after_the_stem():
    body = ResNetIBN(4, [1, 1, 1, 1]).eval()
    y, lengths = body(torch.randn(2, 1, 40, 96), torch.tensor([40, 13]))
    # channels 4·8·4 = 128; time 40 → 20 → 10; bins 96 → 48 → 24 (stem) → 12 → 6 → 3
    assert y.shape == (2, 128, 10, 3) and lengths.tolist() == [10, 4]
    assert y[1, :, 4:].abs().max() == 0                       # padding stays zero


@pytest.mark.parametrize("pooling", ["attentive", "gem", "mean"])
def test_padding_in_a_batch_does_not_change_an_embedding(tiny, pooling):
    net = make(tiny, pooling=pooling).eval()
    torch.manual_seed(1)
    x = torch.randn(3, 400, 96)
    lengths = torch.tensor([400, 251, 77])
    x[1, 251:], x[2, 77:] = 5.0, -3.0                         # garbage in the padding
    batched = net.embed(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = net.embed(x[i: i + 1, :n])
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_masked_norms_use_valid_frames_only():
    x = torch.tensor([1.0, 3.0, 100.0]).reshape(1, 1, 3, 1)   # third frame is padding
    mask = frame_mask(torch.tensor([2]), 3, x.dtype)
    bn = MaskedBatchNorm2d(1, momentum=1.0).train()
    # valid {1, 3}: mean 2, biased var 1 → -1, 1; padding → 0; running var unbiased 2
    torch.testing.assert_close(bn(x, mask).flatten(), torch.tensor([-1.0, 1.0, 0.0]),
                               atol=1e-4, rtol=0)
    assert bn.running_mean.item() == pytest.approx(2.0)
    assert bn.running_var.item() == pytest.approx(2.0)
    inorm = MaskedInstanceNorm2d(1)
    torch.testing.assert_close(inorm(x, mask).flatten(), torch.tensor([-1.0, 1.0, 0.0]),
                               atol=1e-4, rtol=0)


def test_ibn_a_instance_norm_on_half_of_the_first_three_stages_only():
    body = ResNetIBN(8, [3, 4, 6, 3])
    stages = [body.blocks[:3], body.blocks[3:7], body.blocks[7:13], body.blocks[13:]]
    for i, (stage, inner) in enumerate(zip(stages, (8, 16, 32, 64))):
        for block in stage:
            assert isinstance(block, Bottleneck)
            ins = [m for m in block.modules() if isinstance(m, nn.InstanceNorm2d)]
            if i < 3:   # IBN-a: the first norm is half InstanceNorm (affine), half BatchNorm
                assert isinstance(block.norm1, IBNNorm)
                assert [m.num_features for m in ins] == [inner // 2]
                assert ins[0].affine and block.norm1.bnorm.num_features == inner // 2
            else:
                assert ins == [] and isinstance(block.norm1, MaskedBatchNorm2d)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in body.stem.modules())


def test_paper_size_body_has_the_hand_derived_parameter_count():
    with torch.device("meta"):                                # shapes only: no memory, fast
        body = ResNetIBN(64, [3, 4, 6, 3])
    assert sum(p.numel() for p in body.parameters()) == RESNET_IBN_50_BODY_PARAMETERS
    assert body.out_channels == 2048


def test_a_few_training_steps_reduce_the_loss_on_a_separable_batch(tiny):
    """Two works, each a fixed pattern in different bins plus noise: the loss must fall."""
    net = make(tiny, n_classes=2, frame_pool=3).train()
    loss = CoverHunterLoss(tiny.loss, [4, 4], tiny.model.embedding_dim)
    g = torch.Generator().manual_seed(3)
    x = 0.3 * torch.randn(8, 90, 96, generator=g)
    x[:4, :, 20:30] += 2.0                                     # work 0
    x[4:, :, 60:70] += 2.0                                     # work 1
    labels = torch.tensor([0] * 4 + [1] * 4)
    opt = torch.optim.Adam(list(net.parameters()) + list(loss.parameters()), lr=3e-3)
    totals = []
    for _ in range(12):
        out = net(x)
        total = loss(out.pre, out.embedding, out.logits, labels).total
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.5 * totals[0]


def test_a_config_without_the_backbone_keys_loads_as_a_conformer(tiny):
    """Checkpoints saved before model.backbone / resnet_width / resnet_layers existed."""
    old = CoverHunterNet(96, tiny.model, n_classes=3)
    config = {**old.config, "model": dict(old.config["model"])}
    for key in ("backbone", "resnet_width", "resnet_layers"):
        del config["model"][key]
    net = CoverHunterNet.from_config(config)
    assert net.backbone == "conformer" and len(net.blocks) == tiny.model.n_blocks
    net.load_state_dict(old.state_dict())


def test_resnet_config_round_trips(tiny):
    net = make(tiny)
    again = CoverHunterNet.from_config(net.config)
    again.load_state_dict(net.state_dict())
    assert again.config["model"]["resnet_layers"] == [1, 1, 1, 1]


def test_training_statistics_ignore_the_padding():
    """In training mode BatchNorm mixes the batch, so compare a batch with itself padded
    further with garbage: the valid outputs and the running statistics must not move."""
    torch.manual_seed(4)
    a, b = torch.randn(1, 40, 96), torch.randn(1, 24, 96)
    outs, stats = [], []
    for total, fill in ((40, 0.0), (56, 7.0)):
        torch.manual_seed(0)
        body = ResNetIBN(4, [1, 1, 1, 1]).train()
        x = torch.full((2, 1, total, 96), fill)
        x[0, 0, :40], x[1, 0, :24] = a[0], b[0]
        y, lengths = body(x, torch.tensor([40, 24]))
        outs.append((y[0, :, :lengths[0]], y[1, :, :lengths[1]]))
        stats.append(torch.cat([m.running_var for m in body.modules()
                                if isinstance(m, MaskedBatchNorm2d)]))
    for short, long in zip(*outs):
        torch.testing.assert_close(short, long, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(stats[0], stats[1])
