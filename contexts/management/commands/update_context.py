"""Update one session's context from its unseen messages, or send again runs that are stuck queued."""

from __future__ import annotations

from celery import current_app
from django.core.management.base import BaseCommand, CommandError

from contexts import selectors
from contexts.exceptions import ApplicationError
from contexts.extraction.apply import extraction_run_now
from contexts.extraction.dispatch import send_pending
from contexts.extraction.runs import extraction_request
from contexts.management.projects import add_project_argument, project_option
from contexts.models import ExtractionRun

MAX_OLDER_THAN = 100 * 365 * 86400


class Command(BaseCommand):
    help = ("Queue a context update for SESSION_ID (--sync, or with no broker: run it here and now). With "
            "--pending, send again every run the broker never took or a lost worker abandoned (use it once the "
            "broker is back).")

    def add_arguments(self, parser):
        parser.add_argument("session_id", nargs="?")
        parser.add_argument("--sync", action="store_true", help="Run the extraction in this process and wait.")
        add_project_argument(parser, what="The project of SESSION_ID (default: default). --pending sends the runs "
                                          "of every project.")
        parser.add_argument("--pending", action="store_true",
                            help="Send again queued runs not sent yet (or for too long) and abandoned running runs.")
        parser.add_argument("--older-than", type=float, default=0.0,
                            help="With --pending: only runs sent at least this many seconds ago (default 0).")

    def handle(self, *args, session_id=None, sync=False, pending=False, older_than=0.0, project=None, **options):
        if pending:
            # Further back than a century is no run's age, and the cutoff must stay a date (and NaN none at all).
            if not 0 <= older_than <= MAX_OLDER_THAN:
                raise CommandError(f"--older-than must be a number of seconds from 0 to {MAX_OLDER_THAN}.")
            sent, failed = send_pending(older_than=older_than)
            self.stdout.write(f"{sent} run(s) sent to the workers, {failed} could not be sent.")
            if failed:
                raise CommandError("The broker is still unavailable; the runs stay queued.")
            return
        if not session_id:
            raise CommandError("Give a SESSION_ID, or --pending.")
        try:
            session = selectors.session_get(session_id, project=project_option(project))
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        # No broker (the embedded default): no worker would take it, and a thread of this process would still be
        # doing it when the command said where it stands. The command does it itself, as with --sync.
        if sync or current_app.conf.task_always_eager:
            run = extraction_run_now(session=session, trigger="command")
        else:
            run = extraction_request(session=session, trigger="command")
        self.stdout.write(f"run {run.id}: {run.status}" + (f" ({run.error})" if run.error else ""))
        if run.status == ExtractionRun.Status.FAILED:
            raise CommandError(run.error)
