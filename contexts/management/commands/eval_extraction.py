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
        parser.add_argument("--min", action="append", default=[], metavar="METRIC=VALUE",
                            help="Fail (exit 1) when an overall figure is below VALUE; METRIC is one of "
                                 f"{', '.join(evaluation.THRESHOLDS)}. Repeatable.")

    def handle(self, *args, **o):
        minimums = {}
        for item in o["min"]:
            name, _, value = item.partition("=")
            try:
                minimums[name] = float(value)
            except ValueError:
                raise CommandError(f"--min {item}: expected METRIC=NUMBER.") from None
            if name not in evaluation.THRESHOLDS:
                raise CommandError(f"--min {item}: METRIC is one of {', '.join(evaluation.THRESHOLDS)}.")
        if not o["data"].is_dir():
            raise CommandError(f"--data {o['data']} is not a directory.")
        conversations = evaluation.load(o["data"], o["split"])
        if not conversations:
            raise CommandError(f"No labelled conversations in {o['data']} (split {o['split']}).")
        if o["report"]:
            # Before the replay, which may take hours of model calls: a path found unwritable after it loses them.
            try:
                o["report"].open("a", encoding="utf-8").close()
            except OSError as exc:
                raise CommandError(f"--report {o['report']}: {exc.strerror}") from None
        extractor = OpenAIExtractor(model=o["model"]) if o["model"] else OfflineExtractor()
        report = evaluation.evaluate(
            conversations, extractor=extractor,
            progress=lambda items: tqdm(items, unit="conversation", file=self.stderr._out))
        text = report.markdown()
        self.stdout.write(text)
        if o["report"]:
            o["report"].write_text(text, encoding="utf-8")
        overall = report.overall()
        below = [f"{name} {overall[name]:.3f} < {floor}" for name, floor in minimums.items()
                 if overall[name] is not None and overall[name] < floor]
        if below:
            raise CommandError("Below the minimum: " + "; ".join(below) + ".")
