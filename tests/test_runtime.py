"""The network at inference on ONNX Runtime (`evaluate.runtime: onnx`) and with its encoder
in bfloat16 (`torch_bf16`): the same embeddings as torch for any batch and chunk length
(to float precision; to bfloat16's), and the same retrieval metrics."""
import dataclasses

import numpy as np
import pytest
import torch

from coverhunter.model import CoverHunterNet
from coverhunter.model.onnx import OnnxEncoder
from coverhunter.model.runtime import BFloat16Encoder, for_runtime
from coverhunter.retrieval.evaluation import EvalSet, embed_set, score_set


@pytest.fixture(scope="module")
def net(tiny):
    torch.manual_seed(0)
    return CoverHunterNet(tiny.features.n_bins, tiny.model, 5).eval()


@pytest.mark.parametrize(("runtime", "min_cosine"), [("onnx", 0.9999), ("torch_bf16", 0.9995)])
def test_embeddings_equal_torch_for_any_batch_and_length(net, tiny, runtime, min_cosine):
    """ONNX: exported once (batch 2, 200 frames); run on other batches and lengths, padded."""
    onnx = for_runtime(net, runtime)
    assert for_runtime(net, runtime) is onnx and for_runtime(net, "torch") is net
    assert isinstance(onnx, OnnxEncoder if runtime == "onnx" else BFloat16Encoder)
    rng = torch.Generator().manual_seed(1)
    for batch, frames in ((1, 1126), (3, 500), (5, 61)):
        x = torch.randn(batch, frames, tiny.features.n_bins, generator=rng) * 10 - 40
        lengths = torch.randint(frames // 2, frames + 1, (batch,), generator=rng)
        lengths[0] = frames
        with torch.inference_mode():
            want = net.embed(x, lengths).numpy()
        got = onnx.embed(x, lengths).numpy()
        assert got.shape == want.shape == (batch, tiny.model.embedding_dim)
        assert np.min(np.sum(got * want, axis=1)) > min_cosine      # cosine (unit vectors)


@pytest.mark.parametrize("runtime", ["onnx", "torch_bf16"])
def test_retrieval_metrics_equal_torch(net, tiny, runtime):
    """Two works of three noisy versions each: the same mAP and ranks from either runtime."""
    rng = np.random.default_rng(0)
    bases = [rng.normal(-40, 10, size=(700, tiny.features.n_bins)) for _ in range(2)]
    feats = [(b + rng.normal(0, 4, size=b.shape)).astype(np.float32) for b in bases for _ in range(3)]
    s = EvalSet("test", [f"r{i}" for i in range(6)], ["a"] * 3 + ["b"] * 3, feats)
    fps = tiny.features.frame_rate
    scored = {}
    for name in ("torch", runtime):
        p = dataclasses.replace(tiny.evaluate, chunk_s=10.0, hop_s=10.0, runtime=name)
        chunks = embed_set(net, s, p, fps)
        scored[name] = score_set(s, chunks, None, 0)
    assert scored["torch"]["mAP"] > 0.6          # the toy separates its works: the ranks mean something
    for key in ("mAP", "MR1", "HR1"):
        assert scored[runtime][key] == pytest.approx(scored["torch"][key], abs=1e-6)


def test_a_network_changed_in_place_is_exported_again(tiny):
    torch.manual_seed(2)
    net = CoverHunterNet(tiny.features.n_bins, tiny.model, 0).eval()
    x, lengths = torch.randn(2, 300, tiny.features.n_bins) * 10 - 40, torch.tensor([300, 200])
    before = for_runtime(net, "onnx")
    with torch.no_grad():
        net.bottleneck.linear.weight.mul_(-1.0)
    after = for_runtime(net, "onnx")
    assert after is not before
    with torch.inference_mode():
        np.testing.assert_allclose(after.embed(x, lengths).numpy(), net.embed(x, lengths).numpy(), atol=1e-5)


def test_onnx_hands_a_gpu_to_torch_and_refuses_an_unknown_runtime(net, monkeypatch):
    onnx = for_runtime(net, "onnx")
    assert onnx.to("cpu") is onnx
    monkeypatch.setattr(net, "to", lambda device: ("torch network on", str(device)))   # no GPU here
    assert onnx.to("cuda:0") == ("torch network on", "cuda:0")
    with pytest.raises(ValueError, match="evaluate.runtime must be one of torch, onnx, torch_bf16"):
        for_runtime(net, "tensorrt")


def test_bf16_runs_the_encoder_alone_in_bfloat16_and_leaves_the_model_as_it_was(net, tiny):
    """The encoder's output is bfloat16, the pooling's input float32 again; the model given
    keeps its weights and layout (the stand-in works on a channels-last copy)."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    bf16 = for_runtime(net, "torch_bf16")
    seen = {}
    hooks = [bf16.network.blocks[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("encoder", o.dtype)),
             bf16.network.pool.register_forward_pre_hook(lambda m, i: seen.__setitem__("pool", i[0].dtype))]
    bf16.embed(torch.randn(2, 300, tiny.features.n_bins) * 10 - 40, torch.tensor([300, 250]))
    for h in hooks:
        h.remove()
    assert seen == {"encoder": torch.bfloat16, "pool": torch.float32}
    assert bf16.network.subsample.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert net.subsample.conv2.weight.is_contiguous()
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert for_runtime(net, "onnx") is not bf16


def test_no_encoder_dtype_keeps_an_enclosing_autocast(net, tiny):
    """Training's mixed precision wraps the whole forward in autocast; ``encoder_dtype=None``
    must not switch it off for the encoder."""
    seen = []
    hook = net.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.randn(2, 300, tiny.features.n_bins), torch.tensor([300, 250]))
    hook.remove()
    assert seen == [torch.bfloat16]
