"""`python manage.py create_api_key NAME --scopes read,write`: the new key alone on the last line."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from contexts import services
from contexts.exceptions import ApplicationError
from contexts.management.projects import add_project_argument, project_option


class Command(BaseCommand):
    help = "Create an API key for an agent. Only its hash is stored: the key is printed once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses the key, e.g. 'support-bot (prod)'.")
        parser.add_argument("--scopes", default="read,write",
                            help="Comma-separated scopes among read, write (default: read,write).")
        add_project_argument(parser, what="The project the key belongs to, created if it does not exist yet "
                                          "(default: default).")
        parser.add_argument("--expires-in-days", type=int, default=None,
                            help="The key stops working after this many days, at most 36500 (default: never).")

    def handle(self, *args, name: str, scopes: str, project: str, expires_in_days: int | None = None, **options):
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        try:
            # Past a century the expiry soon leaves the calendar (an OverflowError); "never" is leaving it out.
            if expires_in_days is not None and not 1 <= expires_in_days <= 36500:
                raise CommandError("--expires-in-days must be from 1 to 36500 (leave it out for a key that never "
                                   "expires).")
            expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
            # One transaction: a key refused for its name or scopes leaves no project created for it behind.
            with transaction.atomic():
                key, raw_key = services.api_key_create(name=name, scopes=wanted, expires_at=expires_at,
                                                       project=project_option(project, create=True))
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        # Scripts take the last line of stdout: `KEY=$(python manage.py create_api_key bot | tail -n 1)`.
        expiry = f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""
        self.stdout.write(f"Created API key {key.name!r} in project {key.project.slug} (prefix {key.prefix}, "
                          f"scopes {', '.join(key.scopes)}{expiry}); "
                          "it is shown only now, store it safely:")
        self.stdout.write(raw_key)
