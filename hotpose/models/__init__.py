"""Video pose transformers split into seams (embed / blocks / norm / head) and the hourglass around them."""

from hotpose.models.build import build_model

__all__ = ["build_model"]
