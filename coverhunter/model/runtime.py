"""What runs the embedding network at inference (`evaluate.runtime`): the torch network,
its ONNX Runtime export (model/onnx.py), or the torch network with its encoder in
bfloat16 (below). Not in the paper; its Table III times inference, which this speeds up.
"""
from __future__ import annotations

import copy
import logging
from collections import OrderedDict

import torch
from torch import nn

from coverhunter.model.checkpoint import tensors_digest
from coverhunter.model.network import CoverHunterNet
from coverhunter.model.onnx import OnnxEncoder
from coverhunter.params.method import RUNTIMES

log = logging.getLogger(__name__)
_made: OrderedDict[tuple[str, str], OnnxEncoder | BFloat16Encoder] = OrderedDict()   # the last few


def bf16_fast(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matrix products run natively here (a GPU, or a CPU with AVX512-BF16
    or AMX); elsewhere they are emulated and slower than float32."""
    if torch.device(device).type != "cpu":
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class BFloat16Encoder:
    """``embed(x, lengths)`` of a :class:`CoverHunterNet` with its encoder (down-sampling
    convolutions and Conformer blocks, or the ResNet) in bfloat16, the attentive pooling
    and the bottleneck in float32 (in bfloat16 too they moved demo embeddings to cosine
    0.998 of float32's; without them, 0.9999).

    The network is a copy whose convolutions are channels-last, the layout oneDNN's
    bfloat16 kernels take without reordering; the model given is left as it is. On this
    machine's CPU (AVX512-BF16) it embeds a paper-size 45 s chunk at ``frame_pool: 1`` in
    0.7x ONNX Runtime's time; at ``frame_pool: 3`` ONNX Runtime is faster.
    """

    def __init__(self, model: CoverHunterNet):
        self.network = copy.deepcopy(model).eval()
        for module in self.network.modules():
            if isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
        self.embedding_dim = model.embedding_dim
        if not bf16_fast():
            log.warning("evaluate.runtime torch_bf16: this CPU has no bfloat16 instructions "
                        "(AVX512-BF16 or AMX), so it will run slower than onnx; use onnx here")

    def eval(self) -> BFloat16Encoder:
        return self

    def to(self, device) -> BFloat16Encoder:
        self.network.to(device)
        return self

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.network.embed(x, lengths, encoder_dtype=torch.bfloat16)


def for_runtime(model: CoverHunterNet, runtime: str) -> CoverHunterNet | OnnxEncoder | BFloat16Encoder:
    """``model`` itself (``torch``), its ONNX Runtime stand-in (``onnx``) or its bfloat16
    encoder (``torch_bf16``); the stand-ins are made once per model."""
    if runtime == "torch":
        return model
    if runtime not in RUNTIMES:
        raise ValueError(f"evaluate.runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    # keyed by the weights, not the object: a network changed in place is made again
    key = (runtime, f"{model.config}|{tensors_digest(model.state_dict())}")
    if key not in _made:
        _made[key] = OnnxEncoder(model) if runtime == "onnx" else BFloat16Encoder(model)
        while len(_made) > 4:
            _made.popitem(last=False)
    _made.move_to_end(key)
    return _made[key]
