"""Write sessions as JSON Lines (one session document per line) for import_sessions on another deployment."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from contexts.exceptions import ApplicationError
from contexts.management.projects import add_project_argument, project_option
from contexts.selectors import governance


class Command(BaseCommand):
    help = ("Export every session (or one end user's, --user-id) with its messages and revisions as JSON Lines, "
            "to --output FILE or standard output.")

    def add_arguments(self, parser):
        parser.add_argument("--user-id", help="Only this end user's sessions, in --project (default: the `default` "
                                              "project: user ids are each project's own).")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        add_project_argument(parser, default=None,
                             what="Only this project (default: every project, or with --user-id the `default` "
                                  "project; each document names its project).")

    def handle(self, *args, user_id=None, output=None, no_progress=False, project=None, **options):
        try:
            scope = project_option(project)
            if user_id is not None:
                sessions = governance.sessions_of_user(user_id, project=scope or project_option("default"))
            else:
                sessions = governance.all_sessions(scope)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        try:
            out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115 (stdout stays open)
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
        # Counted here: a disabled progress bar (--no-progress) counts nothing.
        written = 0
        try:
            with tqdm(total=sessions.count(), unit="session", disable=no_progress, file=sys.stderr) as bar:
                for document in governance.session_documents(sessions, staff_notes=True):
                    out.write(json.dumps(document, ensure_ascii=False) + "\n")
                    written += 1
                    bar.update(1)
        finally:
            if output:
                out.close()
        if output:
            self.stdout.write(f"Exported {written} session(s) to {output}.")
