"""Score the extractor (offline, or a model with --model) on labelled conversations; see docs/extraction.md."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contexts.extraction import evaluation
from contexts.extraction.extractors.offline import OfflineExtractor
from contexts.extraction.extractors.openai_extractor import OpenAIExtractor

DEFAULT_DATA = Path(settings.BASE_DIR) / "tests" / "data" / "conversations"


class Command(BaseCommand):
    help = ("Replay labelled conversations through the real extraction path (nothing is kept) and print goal "
            "accuracy, plan and progress F1, summary key-fact recall, tokens, latency and failed runs.")

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Directory of labelled *.json files.")
        parser.add_argument("--split", choices=evaluation.SPLITS, default="all")
        parser.add_argument("--model", help="Use this model at the configured OpenAI-compatible endpoint "
                                            "(OPENAI_BASE_URL, OPENAI_API_KEY); without it, the offline extractor.")
        parser.add_argument("--report", type=Path, help="Also write the figures as Markdown to this file.")

    def handle(self, *args, **o):
        if not o["data"].is_dir():
            raise CommandError(f"--data {o['data']} is not a directory.")
        conversations = evaluation.load(o["data"], o["split"])
        if not conversations:
            raise CommandError(f"No labelled conversations in {o['data']} (split {o['split']}).")
        extractor = OpenAIExtractor(model=o["model"]) if o["model"] else OfflineExtractor()
        report = evaluation.evaluate(
            conversations, extractor=extractor,
            progress=lambda items: tqdm(items, unit="conversation", file=self.stderr._out))
        text = report.markdown()
        self.stdout.write(text)
        if o["report"]:
            o["report"].write_text(text, encoding="utf-8")
