"""How far any extractive goal can get on the labelled set (#18.3): the share of planning conversations whose
goal label some stretch of the conversation's own words reaches, under eval_extraction's rule (token F1 ≥ 0.5).

An extractor that picks text out of the messages (the offline one does) can at best pick the stretch closest to
the label. This prints that best case, per split, for three kinds of stretch, of the user's messages alone and of
everyone's, beside what the offline extractor gets:

- sentence: one whole sentence (the offline rules pick one, or a request with the sentence before or after it);
- clause: a part of a sentence between commas, semicolons, colons or an "and";
- window: any run of consecutive words inside one sentence, chosen knowing the label (an oracle: no rule can
  pick it without the label, so it bounds every extractive rule from above).

    .venv/bin/python bench/goal_ceiling.py              dev and held-out (no extraction run: ~1 minute)
    .venv/bin/python bench/goal_ceiling.py --offline    also the offline extractor's goal accuracy (~2 minutes)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CLAUSE = re.compile(r"[,;:]|\s(?:and|but|y|pero|und|aber|et|mais)\s")


def setup() -> None:
    db = Path(tempfile.mkdtemp(prefix="bench-goal-")) / "db.sqlite3"
    os.environ.update({"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": "bench-only-insecure-key", "DEBUG": "false",
                       "ALLOWED_HOSTS": "localhost", "DJANGO_SETTINGS_MODULE": "sessionctx.settings",
                       "LOG_LEVEL": "WARNING", "SESSIONCTX_INPROCESS_WORKERS": "0"})
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("CACHE_URL", None)
    import django

    django.setup()


def best(stretches: list[str], label: str) -> float:
    from contexts.extraction.evaluation import token_f1

    return max((token_f1(s, label) for s in stretches), default=0.0)


def ceilings(conversation: dict, roles: tuple[str, ...]) -> dict[str, bool]:
    """Whether the best sentence, clause and word window of these roles' messages reach the goal label."""
    from contexts.extraction.evaluation import GOAL_F1
    from contexts.extraction.extractors.offline.text import split_sentences

    label = conversation["expected"]["goal"]
    sentences = [s for m in conversation["messages"] if m["role"] in roles for s in split_sentences(m["content"])]
    clauses = [c.strip() for s in sentences for c in _CLAUSE.split(s) if c.strip()]
    windows = []
    for sentence in sentences:
        words = sentence.split()
        windows += [" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(len(words), i + 40) + 1)]
    return {"sentence": best(sentences, label) >= GOAL_F1, "clause": best(clauses, label) >= GOAL_F1,
            "window": best(windows, label) >= GOAL_F1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offline", action="store_true", help="also replay the offline extractor")
    args = parser.parse_args()
    setup()
    from django.core.management import call_command

    from contexts.extraction import evaluation
    from contexts.extraction.extractors.offline import OfflineExtractor

    if args.offline:
        call_command("migrate", verbosity=0)
    data = ROOT / "tests" / "data" / "conversations"
    print("| split | planning conversations | roles | best sentence | best clause | best word window (oracle) |"
          + (" offline extractor |" if args.offline else ""))
    print("|---" * (7 if args.offline else 6) + "|")
    for split in ("dev", "held-out"):
        planning = [c for c in evaluation.load(data, split) if c["mode"] == "planning"]
        offline = ""
        if args.offline:
            report = evaluation.evaluate(planning, extractor=OfflineExtractor())
            offline = f" {report.overall()['goal']:.2f} |"
        for roles in (("user",), ("user", "assistant")):
            hits = [ceilings(c, roles) for c in planning]
            share = {k: sum(h[k] for h in hits) / len(hits) for k in ("sentence", "clause", "window")}
            print(f"| {split} | {len(planning)} | {' + '.join(roles)} | {share['sentence']:.2f} | "
                  f"{share['clause']:.2f} | {share['window']:.2f} |" + (offline if roles == ("user",) else
                                                                       (" |" if args.offline else "")))


if __name__ == "__main__":
    main()
