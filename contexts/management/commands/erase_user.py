"""Erase every session of an end user (the right to erasure), as DELETE /api/v1/users/{user_id} does."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from contexts.exceptions import ApplicationError
from contexts.management.projects import add_project_argument, project_option
from contexts.services import Actor
from contexts.services.governance import user_erase


class Command(BaseCommand):
    help = ("Delete every session of USER_ID with its messages, revisions, runs, handoff events and events; "
            "prints the counts and records them (no content). Running it again deletes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("user_id")
        add_project_argument(parser, what="The project whose end user this is (default: default).")

    def handle(self, *args, user_id: str, project: str, **options):
        try:
            record = user_erase(user_id=user_id, project=project_option(project),
                                actor=Actor.system("command:erase_user"))
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in record.counts.items())
        self.stdout.write(f"Deleted {summary} (recorded as data deletion #{record.pk}).")
