import dataclasses

import pytest
import torch

from coverhunter.model import CoverHunterNet
from coverhunter.model.conformer import RelPositionAttention
from coverhunter.model.frontend import pool_frames, subtract_chunk_mean
from coverhunter.model.masking import MaskedBatchNorm, lengths_to_mask
from coverhunter.model.pooling import AttentiveTimePooling, weighted_mean_std

PAPER_SIZE_PARAMETERS = 2_312_768   # docs/performance.md "2.31 M" (benchmarks/bench_model.py), classifier excluded,
                                    # with the linear neck; a BNNeck drops the linear bias (-128) and
                                    # adds the BatchNorm's weight and bias (+256): +128


def make(tiny, pooling="attentive", n_classes=5, **model):
    torch.manual_seed(0)
    m = dataclasses.replace(tiny.model, pooling=pooling, **model)
    return CoverHunterNet(tiny.features.n_bins, m, n_classes)


def test_shapes_and_time_downsampling(tiny):
    net = make(tiny, frame_pool=1).eval()
    x = torch.randn(3, 375, 96)
    out = net(x)
    assert out.pre.shape == (3, 32) and out.embedding.shape == (3, 16) and out.logits.shape == (3, 5)
    h, lengths = net.subsample(x, torch.tensor([375, 200, 9]))
    assert h.shape[1] == 94 and lengths.tolist() == [94, 50, 3]   # ceil(ceil(T/2)/2)


def test_frame_pooling_divides_time_by_k_first(tiny):
    net = make(tiny, frame_pool=3).eval()
    h, lengths = net.subsample(torch.randn(3, 375, 96), torch.tensor([375, 200, 9]))
    # ceil(T/3) = 125, 67, 3 → ceil(ceil(·/2)/2) = 32, 17, 1
    assert h.shape[1] == 32 and lengths.tolist() == [32, 17, 1]


def test_pool_frames_averages_valid_frames_only():
    x = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1).repeat(2, 1, 2)   # frame t = t
    x[1, 5:] = 100.0                                                            # padding of item 1
    y, lengths = pool_frames(x, torch.tensor([8, 5]), 3)
    assert lengths.tolist() == [3, 2]
    # item 0: (0+1+2)/3, (3+4+5)/3, (6+7)/2; item 1: (0+1+2)/3, (3+4)/2, then padding
    torch.testing.assert_close(y[0, :, 0], torch.tensor([1.0, 4.0, 6.5]))
    torch.testing.assert_close(y[1, :2, 0], torch.tensor([1.0, 3.5]))


def test_subtract_chunk_mean_by_hand():
    x = torch.tensor([[[1.0, 10.0], [3.0, 20.0], [50.0, 50.0]]])            # (1, 3, 2)
    y = subtract_chunk_mean(x, lengths_to_mask(torch.tensor([2]), 3))       # third frame is padding
    torch.testing.assert_close(y, torch.tensor([[[-1.0, -5.0], [1.0, 5.0], [0.0, 0.0]]]))


def test_chunk_mean_makes_the_embedding_blind_to_spectral_colour(tiny):
    """A fixed per-bin offset (an instrument's or a room's long-term colour, in dB) does not
    move the embedding with input_norm chunk_mean, and does without it."""
    torch.manual_seed(2)
    x = torch.randn(2, 300, 96)
    colour = torch.linspace(-20, 0, 96)                                      # (bins,) dB tilt
    blind = make(tiny, input_norm="chunk_mean").eval()
    torch.testing.assert_close(blind.embed(x + colour), blind.embed(x), atol=1e-5, rtol=1e-5)
    seeing = make(tiny, input_norm="none").eval()
    assert (seeing.embed(x + colour) - seeing.embed(x)).abs().max() > 1e-2


@pytest.mark.parametrize("pooling", ["attentive", "gem", "mean"])
def test_padding_in_a_batch_does_not_change_an_embedding(tiny, pooling):
    net = make(tiny, pooling).eval()
    torch.manual_seed(1)
    x = torch.randn(3, 400, 96)
    lengths = torch.tensor([400, 251, 77])
    batched = net.embed(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = net.embed(x[i: i + 1, :n])
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_variable_length_inputs_embed_to_unit_vectors(tiny):
    net = make(tiny).eval()
    for frames in (30, 375, 1125):
        e = net.embed(torch.randn(2, frames, 96))
        assert e.shape == (2, 16)
        torch.testing.assert_close(e.norm(dim=1), torch.ones(2))


def test_embed_refuses_training_mode(tiny):
    with pytest.raises(RuntimeError, match="eval"):
        make(tiny).train().embed(torch.randn(1, 50, 96))


@pytest.mark.parametrize("t", [1, 2, 7])
def test_relative_position_attention_by_its_definition(t):
    """score(i, j) = ((q_i + u)·k_j + (q_i + v)·W p(i - j)) / sqrt(dk), p the sinusoid of
    the offset, computed pair by pair; padded keys get no weight."""
    torch.manual_seed(0)
    d, h = 8, 2
    attn = RelPositionAttention(d, h, dropout=0.0).eval()
    with torch.no_grad():
        attn.u.normal_()
        attn.v.normal_()
    x = torch.randn(2, t, d)
    lengths = [t, max(1, t - 3)]
    mask = lengths_to_mask(torch.tensor(lengths), t)

    dk = d // h
    q, k, v = attn.qkv(attn.norm(x)).view(2, t, 3, h, dk).unbind(2)
    freqs = torch.exp(torch.arange(0, d, 2) * (-torch.log(torch.tensor(10000.0)) / d))
    expected = torch.zeros(2, t, h, dk)
    for b in range(2):
        for i in range(t):
            for hh in range(h):
                scores = torch.full((t,), float("-inf"))
                for j in range(lengths[b]):
                    angle = (i - j) * freqs
                    p = attn.pos(torch.stack([angle.sin(), angle.cos()], -1).flatten()).view(h, dk)[hh]
                    scores[j] = ((q[b, i, hh] + attn.u[hh]) @ k[b, j, hh]
                                 + (q[b, i, hh] + attn.v[hh]) @ p) / dk ** 0.5
                expected[b, i, hh] = scores.softmax(0) @ v[b, :, hh]
    torch.testing.assert_close(attn(x, mask), attn.out(expected.reshape(2, t, d)), atol=1e-5, rtol=1e-5)


def test_random_attention_mask_only_while_training():
    torch.manual_seed(0)
    pool = AttentiveTimePooling(d_in=8, hidden=4, out_dim=6, mask_prob=0.5)
    x, mask = torch.randn(2, 20, 8), torch.ones(2, 20, dtype=torch.bool)
    pool.eval()
    torch.testing.assert_close(pool(x, mask), pool(x, mask))
    pool.train()
    assert not torch.allclose(pool(x, mask), pool(x, mask))


def test_attentive_pooling_with_uniform_attention_is_mean_and_std():
    """With the scoring layer zeroed every frame gets the same weight, so the pooled
    vector is the projection of the plain mean and std over the valid frames."""
    pool = AttentiveTimePooling(d_in=3, hidden=4, out_dim=6, mask_prob=0.0).eval()
    with torch.no_grad():
        for p in pool.score.parameters():
            p.zero_()
    x = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 2.0, 4.0], [9.0, 9.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])          # the third frame is padding
    mean = torch.tensor([[2.0, 2.0, 2.0]])
    std = torch.tensor([[1.0, 1e-3, 2.0]])              # std of {2,2} is clamped at sqrt(eps)
    expected = pool.proj(torch.cat([mean, std], dim=-1))
    torch.testing.assert_close(pool(x, mask), expected, atol=1e-5, rtol=1e-5)


def test_weighted_mean_std_by_hand():
    x = torch.tensor([[[0.0], [4.0]]])
    mean, std = weighted_mean_std(x, torch.tensor([[[0.75], [0.25]]]))
    assert mean.item() == pytest.approx(1.0)                 # 0.25 · 4
    assert std.item() == pytest.approx(3 ** 0.5, rel=1e-5)   # E[x²] - 1 = 4 - 1


def test_masked_batchnorm_uses_valid_frames_only():
    bn = MaskedBatchNorm(1, momentum=1.0).train()
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = lengths_to_mask(torch.tensor([2]), 3)
    y = bn(x, mask)
    # valid values {1, 3}: mean 2, biased var 1 → (x - 2) / 1; padding → 0
    torch.testing.assert_close(y[0, :, 0], torch.tensor([-1.0, 1.0, 0.0]), atol=1e-4, rtol=0)
    assert bn.running_mean.item() == pytest.approx(2.0)
    assert bn.running_var.item() == pytest.approx(2.0)       # unbiased: 2 / (2 - 1)


def test_unknown_pooling_is_named(tiny):
    with pytest.raises(ValueError, match="model.pooling must be attentive, gem or mean"):
        make(tiny, pooling="max")


def test_default_model_builds(params):
    net = CoverHunterNet(96, params.model, n_classes=0).eval()
    assert net.embed(torch.randn(1, 1125, 96)).shape == (1, params.model.embedding_dim)


def test_paper_size_model_has_the_measured_parameter_count(params):
    """The paper's size (docs/performance.md): width 128, feed-forward 256, 6 blocks, 128 conv channels."""
    paper = dataclasses.replace(params.model, d_model=128, ff_dim=256, n_blocks=6,
                                subsample_channels=128, neck="linear")
    net = CoverHunterNet(96, paper, n_classes=0)
    assert sum(p.numel() for p in net.parameters()) == PAPER_SIZE_PARAMETERS
    bn = CoverHunterNet(96, dataclasses.replace(paper, neck="bnneck"), n_classes=0)
    assert sum(p.numel() for p in bn.parameters()) == PAPER_SIZE_PARAMETERS + 128


def test_bnneck_keeps_its_bias_at_zero_and_centres_the_embedding(tiny):
    """BNNeck [21]: the BatchNorm's bias is frozen at 0, so after training steps it is still
    0 and, in training mode, every embedding dimension has batch mean 0."""
    net = make(tiny, neck="bnneck")
    opt = torch.optim.Adam([q for q in net.parameters() if q.requires_grad], lr=0.1)
    x = torch.randn(8, 150, 96) + 5.0        # a shared offset the neck must remove
    for _ in range(3):
        out = net(x)
        opt.zero_grad()
        (out.logits.logsumexp(dim=1).mean() + out.embedding.pow(2).mean()).backward()
        opt.step()
    assert torch.equal(net.bottleneck.norm.bias, torch.zeros_like(net.bottleneck.norm.bias))
    assert net(x).embedding.mean(dim=0).abs().max() < 1e-5


def test_a_checkpoint_config_without_neck_loads_the_linear_bottleneck(tiny):
    net = make(tiny, neck="linear", n_classes=0)
    config = {**net.config, "model": {k: v for k, v in net.config["model"].items() if k != "neck"}}
    old = CoverHunterNet.from_config(config)
    assert isinstance(old.bottleneck, torch.nn.Linear)
    old.load_state_dict(net.state_dict())     # the weight names of the old checkpoints
    with pytest.raises(ValueError, match="model.neck must be 'bnneck' or 'linear'"):
        dataclasses.replace(tiny.model, neck="bn")
