"""The embedding network at inference on ONNX Runtime (`evaluate.runtime: onnx`).

The eval-mode network (the encoder, pooling and bottleneck up to the L2-normalised
embedding) is exported once per model with dynamic batch and frame axes and run by ONNX
Runtime on the CPU; it stands in for the network wherever chunks are embedded
(:func:`coverhunter.retrieval.inference.embed_chunks`). On a GPU the torch network runs.
On this 2-core machine it embeds paper-size 45 s chunks 1.2x faster than torch at
`frame_pool: 3` and 1.8x at 1 (2.5-3x when the cores are shared with other work), with
the same vectors (cosine 1 to float precision; tested).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from coverhunter.model.network import CoverHunterNet


class _Embedding(nn.Module):
    """The traced graph: features ``(B, T, bins)`` and lengths ``(B,)`` → unit vectors ``(B, D)``."""

    def __init__(self, model: CoverHunterNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x, lengths)


class OnnxEncoder:
    """``embed(x, lengths)`` of a :class:`CoverHunterNet`, on ONNX Runtime (CPU)."""

    def __init__(self, model: CoverHunterNet, threads: int | None = None):
        import onnxruntime as ort
        self.network = model = model.eval()
        self.embedding_dim = model.embedding_dim
        n_bins = model.config["n_bins"]
        x, lengths = torch.zeros(2, 200, n_bins), torch.tensor([200, 150])
        graph = io.BytesIO()
        with warnings.catch_warnings():     # the TorchScript exporter: deprecated, still the one that
            warnings.simplefilter("ignore")  # traces this network's masks with dynamic frame counts
            torch.onnx.export(_Embedding(model).eval(), (x, lengths), graph, input_names=["x", "lengths"],
                              output_names=["embedding"], dynamo=False, opset_version=17,
                              dynamic_axes={"x": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                                            "embedding": {0: "batch"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3                      # warnings about unused initialisers: off
        # the threads spin between operators (faster) but stop when a run ends: left spinning,
        # they took the cores from the next query's decoding (+20 ms of 95 here)
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    def eval(self) -> OnnxEncoder:
        return self

    def to(self, device) -> OnnxEncoder | CoverHunterNet:
        """Itself on the CPU; on a GPU the torch network (ONNX Runtime runs here on the CPU)."""
        return self if torch.device(device).type == "cpu" else self.network.to(device)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"x": x.numpy().astype(np.float32, copy=False),
                                      "lengths": lengths.numpy().astype(np.int64, copy=False)})[0]
        return torch.from_numpy(out)
