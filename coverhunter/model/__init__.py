"""The CoverHunter network [II-A, II-B]: BatchNorm over bins, time down-sampling by 4,
N Conformer blocks, time pooling, linear bottleneck."""
from coverhunter.model.network import CoverHunterNet, ModelOutput

__all__ = ["CoverHunterNet", "ModelOutput"]
