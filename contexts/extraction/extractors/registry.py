"""Which extractor runs: the model one when a model is configured, else the offline one."""

from __future__ import annotations

from .. import llm
from .base import Extractor
from .offline import OfflineExtractor
from .openai_extractor import OpenAIExtractor


def get_extractor() -> Extractor:
    """The model extractor when SESSIONCTX_MODEL is set, else the offline one."""
    if llm.is_configured():
        return OpenAIExtractor(model=llm.model_name())
    return OfflineExtractor()
