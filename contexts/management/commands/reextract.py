"""Re-run the extraction for many sessions at once, with filters and a progress bar."""

from __future__ import annotations

from collections import Counter
from datetime import UTC

from celery import current_app
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from contexts import selectors, services
from contexts.extraction.apply import extraction_run_now
from contexts.extraction.runs import extraction_request
from contexts.management.projects import add_project_argument, project_option
from contexts.models import ExtractionRun, Mode, Status
from contexts.services import Actor


class Command(BaseCommand):
    help = ("Queue a context update for every matching session (--sync, or with no broker: run them here). "
            "--from-scratch empties the extracted fields first (a reset revision) so the update re-reads all "
            "messages. Exits 1 when a run failed.")

    def add_arguments(self, parser):
        parser.add_argument("--mode", choices=Mode.values)
        parser.add_argument("--status", choices=Status.values)
        parser.add_argument("--agent-id")
        parser.add_argument("--user-id")
        parser.add_argument("--updated-after", help="ISO date or datetime.")
        parser.add_argument("--all", action="store_true", help="Required when no filter is given.")
        parser.add_argument("--dry-run", action="store_true", help="Only count the matching sessions.")
        parser.add_argument("--from-scratch", action="store_true")
        parser.add_argument("--reason", default="", help="Why (recorded on the reset revisions of --from-scratch).")
        parser.add_argument("--sync", action="store_true", help="Run the extractions in this process.")
        add_project_argument(parser)

    def handle(self, *args, **o):
        updated_after = None
        if o["updated_after"]:
            try:
                updated_after = parse_datetime(o["updated_after"]) or (
                    parse_datetime(o["updated_after"] + "T00:00:00+00:00") if parse_date(o["updated_after"]) else None)
                # Past year 9999 (or before year 1) in UTC: SQLite cannot compare it (a traceback), PostgreSQL does,
                # so the same command would mean two things.
                if updated_after is not None and updated_after.tzinfo is not None:
                    updated_after.astimezone(UTC)
            except (ValueError, OverflowError):
                # Well formed but no time there is (month 13, 30 February).
                updated_after = None
            if updated_after is None:
                raise CommandError("--updated-after must be an ISO date or datetime (years 1-9999 in UTC).")
        for option in ("user_id", "agent_id"):
            # session_list ignores a blank filter: `--user-id "$UNSET"` would select (and reset) every session.
            if o[option] is not None and not o[option].strip():
                raise CommandError(f"--{option.replace('_', '-')} must not be blank.")
        filters = {"mode": o["mode"], "status": o["status"], "agent_id": o["agent_id"], "user_id": o["user_id"],
                   "updated_after": updated_after}
        if not o["all"] and not any(v is not None for v in filters.values()):
            raise CommandError("Give at least one filter, or --all to re-extract every session.")
        if o["from_scratch"] and not o["reason"].strip():
            raise CommandError("--from-scratch needs --reason (it is recorded on each reset revision).")
        sessions = selectors.session_list(project=project_option(o["project"]), **filters)
        total = sessions.count()
        if o["dry_run"]:
            self.stdout.write(f"{total} session(s) match; nothing done (dry run).")
            return
        outcomes: Counter[str] = Counter()
        actor = Actor.system("command:reextract")
        for session in tqdm(sessions.iterator(), total=total, unit="session", file=self.stderr._out):
            if o["from_scratch"]:
                services.snapshot_rewind(session=session, actor=actor, reason=o["reason"])
            # No broker (the embedded default): done here, as with --sync, so the counts say how each ended.
            if o["sync"] or current_app.conf.task_always_eager:
                run = extraction_run_now(session=session, trigger="reextract")
            else:
                run = extraction_request(session=session, trigger="reextract")
            outcomes[run.status] += 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items())) or "nothing"
        self.stdout.write(f"{total} session(s): {summary}.")
        # As update_context does: a script must see that runs failed (their messages stay unseen).
        if outcomes[ExtractionRun.Status.FAILED]:
            raise CommandError(f"{outcomes[ExtractionRun.Status.FAILED]} run(s) failed; see each run's error "
                               "(admin, Extraction runs).")
