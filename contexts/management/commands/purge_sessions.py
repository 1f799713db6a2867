"""Delete sessions untouched for a while, as the periodic retention purge does, with a progress bar."""

from __future__ import annotations

import re
import sys
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contexts.management.projects import add_project_argument, project_option
from contexts.selectors.governance import sessions_untouched_since
from contexts.services import Actor
from contexts.services.governance import retention_cutoff, sessions_purge

UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
# Further back than a century is no session's age (and past year 1 no date at all).
MAX_PERIOD = timedelta(days=36500)


def duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`; a bare number is days."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhms]?)\s*", text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 30m or 45s")
    try:
        period = timedelta(**{UNITS[match.group(2) or "d"]: int(match.group(1))})
    except OverflowError:
        period = MAX_PERIOD + timedelta(days=1)
    if period > MAX_PERIOD:
        raise ValueError(f"--older-than {text!r} is longer than a century (36500d)")
    return period


class Command(BaseCommand):
    help = ("Delete sessions neither changed nor sent a message for --older-than (e.g. 90d), with their messages, "
            "revisions, runs and events, in short batches; the counts are recorded (Data deletions in the admin).")

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True,
                            help="90d, 12h, 30m, 45s (a bare number: days); at most a century.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=None,
                            help=f"Sessions per transaction (default {settings.SESSIONCTX_DELETE_BATCH_SIZE}).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        add_project_argument(parser, default=None, what="Only this project's sessions (default: every project).")

    def handle(self, *args, older_than: str, dry_run=False, batch_size=None, no_progress=False, project=None,
               **options):
        try:
            period = duration(older_than)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        project = project_option(project)
        total = 0 if dry_run else sessions_untouched_since(retention_cutoff(period), project=project).count()
        with tqdm(total=total, unit="session", disable=no_progress or dry_run, file=sys.stderr) as bar:
            counts, record = sessions_purge(older_than=period, actor=Actor.system("command:purge_sessions"),
                                            project=project,
                                            batch_size=batch_size, dry_run=dry_run, progress=bar.update)
        summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        if dry_run:
            self.stdout.write(f"Would delete {summary} (dry run: nothing deleted).")
        else:
            recorded = f"recorded as data deletion #{record.pk}" if record else "nothing to record"
            self.stdout.write(f"Deleted {summary} ({recorded}).")
