"""vseam-pl: V-SEAM (visual semantic editing and attention modulating) for frozen VLMs, in PyTorch Lightning."""

from .interventions import HeadModulation, ablate_heads, head_output_means
from .records import Example, ImagePair, QARecord
from .scoring import predict, score_candidates
from .vlm import VLM, load_vlm

__all__ = [
    "VLM",
    "Example",
    "HeadModulation",
    "ImagePair",
    "QARecord",
    "ablate_heads",
    "head_output_means",
    "load_vlm",
    "predict",
    "score_candidates",
]
__version__ = "0.1.0"
