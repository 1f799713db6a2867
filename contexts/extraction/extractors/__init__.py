"""Extractors turn a previous snapshot plus unseen messages into the next snapshot."""

from .base import ExtractionError, ExtractionResult, Extractor, Usage
from .registry import get_extractor

__all__ = ["ExtractionError", "ExtractionResult", "Extractor", "Usage", "get_extractor"]
