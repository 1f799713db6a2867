"""`python manage.py create_api_key NAME --scopes read,write`: the new key alone on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from contexts import services
from contexts.exceptions import ApplicationError


class Command(BaseCommand):
    help = "Create an API key for an agent. Only its hash is stored: the key is printed once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses the key, e.g. 'support-bot (prod)'.")
        parser.add_argument("--scopes", default="read,write",
                            help="Comma-separated scopes among read, write (default: read,write).")

    def handle(self, *args, name: str, scopes: str, **options):
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        try:
            key, raw_key = services.api_key_create(name=name, scopes=wanted)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        # Scripts take the last line of stdout: `KEY=$(python manage.py create_api_key bot | tail -n 1)`.
        self.stdout.write(f"Created API key {key.name!r} (prefix {key.prefix}, scopes {', '.join(key.scopes)}); "
                          "it is shown only now, store it safely:")
        self.stdout.write(raw_key)
