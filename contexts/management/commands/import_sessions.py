"""Read sessions written by export_sessions (JSON Lines) into this deployment, exactly as they were exported."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contexts.management.projects import add_project_argument, project_option
from contexts.services.exports import session_import


class Command(BaseCommand):
    help = ("Import the sessions of a JSON Lines FILE ('-': standard input) made by export_sessions: versions, "
            "revisions and message seqs as they were. A session already here with the same history is left as "
            "it is (importing twice changes nothing); one with a different history is refused, not merged.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        add_project_argument(parser, default=None,
                             what="Import into this project, created if need be (default: the project each "
                                  "session was exported from).")

    def refuse(self, line: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            self.stderr.write(line)

    def handle(self, *args, file: str, no_progress=False, project=None, **options):
        try:
            # Bytes, decoded line by line: a line that is not UTF-8 is refused like one that is not JSON.
            source = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}") from None
        try:
            # Once the file could be opened: a mistyped path creates no project.
            target = project_option(project, create=True)
        except CommandError:
            source.close()
            raise
        outcomes = {"created": 0, "unchanged": 0, "refused": 0}
        with source, tqdm(unit="session", disable=no_progress, file=sys.stderr) as bar:
            for number, raw in enumerate(source, start=1):
                if not raw.strip():
                    continue
                try:
                    document = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    outcomes["refused"] += 1
                    self.refuse(f"line {number}: refused: not UTF-8 ({exc})")
                    continue
                except ValueError as exc:
                    outcomes["refused"] += 1
                    self.refuse(f"line {number}: refused: not JSON ({exc})")
                    continue
                result = session_import(document=document, project=target)
                outcomes[result.outcome] += 1
                if result.outcome == "refused":
                    self.refuse(f"line {number}: session {result.session_id} refused: {result.message}")
                bar.update(1)
        self.stdout.write(f"{outcomes['created']} created, {outcomes['unchanged']} unchanged (already here), "
                          f"{outcomes['refused']} refused.")
        if outcomes["refused"]:
            raise CommandError(f"{outcomes['refused']} session(s) refused; see the lines above.")
