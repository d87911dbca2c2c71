"""The CoverHunter network [II-A, II-B]: BatchNorm over bins, time down-sampling by 4,
N Conformer blocks, time pooling, bottleneck (``model.neck``: a BNNeck by default)."""
from coverhunter.model.network import CoverHunterNet, ModelOutput

__all__ = ["CoverHunterNet", "ModelOutput"]
