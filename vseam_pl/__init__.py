"""vseam-pl: V-SEAM (visual semantic editing and attention modulating) for frozen VLMs, in PyTorch Lightning."""

from .records import Example, ImagePair, QARecord

__all__ = ["Example", "ImagePair", "QARecord"]
__version__ = "0.1.0"
