"""The network on ONNX Runtime (`evaluate.runtime: onnx`): the same embeddings as torch
for any batch and chunk length, and the same retrieval metrics."""
import dataclasses

import numpy as np
import pytest
import torch

from coverhunter.model import CoverHunterNet
from coverhunter.model.onnx import OnnxEncoder, for_runtime
from coverhunter.retrieval.evaluation import EvalSet, embed_set, score_set


@pytest.fixture(scope="module")
def net(tiny):
    torch.manual_seed(0)
    return CoverHunterNet(tiny.features.n_bins, tiny.model, 5).eval()


def test_embeddings_equal_torch_for_any_batch_and_length(net, tiny):
    """Exported once (batch 2, 200 frames); run on other batches and lengths, padded."""
    onnx = for_runtime(net, "onnx")
    assert isinstance(onnx, OnnxEncoder) and for_runtime(net, "onnx") is onnx and for_runtime(net, "torch") is net
    rng = torch.Generator().manual_seed(1)
    for batch, frames in ((1, 1126), (3, 500), (5, 61)):
        x = torch.randn(batch, frames, tiny.features.n_bins, generator=rng) * 10 - 40
        lengths = torch.randint(frames // 2, frames + 1, (batch,), generator=rng)
        lengths[0] = frames
        with torch.inference_mode():
            want = net.embed(x, lengths).numpy()
        got = onnx.embed(x, lengths).numpy()
        assert got.shape == want.shape == (batch, tiny.model.embedding_dim)
        assert np.min(np.sum(got * want, axis=1)) > 0.9999          # cosine (unit vectors)


def test_retrieval_metrics_equal_torch(net, tiny):
    """Two works of three noisy versions each: the same mAP and ranks from either runtime."""
    rng = np.random.default_rng(0)
    bases = [rng.normal(-40, 10, size=(700, tiny.features.n_bins)) for _ in range(2)]
    feats = [(b + rng.normal(0, 4, size=b.shape)).astype(np.float32) for b in bases for _ in range(3)]
    s = EvalSet("test", [f"r{i}" for i in range(6)], ["a"] * 3 + ["b"] * 3, feats)
    fps = tiny.features.frame_rate
    scored = {}
    for runtime in ("torch", "onnx"):
        p = dataclasses.replace(tiny.evaluate, chunk_s=10.0, hop_s=10.0, runtime=runtime)
        chunks = embed_set(net, s, p, fps)
        scored[runtime] = score_set(s, chunks, None, 0)
    for key in ("mAP", "MR1", "HR1"):
        assert scored["onnx"][key] == pytest.approx(scored["torch"][key], abs=1e-6)


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
    with pytest.raises(ValueError, match="evaluate.runtime must be one of torch, onnx"):
        for_runtime(net, "tensorrt")
