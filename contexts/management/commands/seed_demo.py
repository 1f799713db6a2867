"""Demo data for `make run`: an admin, an API key and a few sessions, only into an empty database."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from contexts import services
from contexts.models import Project, SessionContext
from contexts.services import Actor

DEMO = [
    {
        "session_id": "demo-trip-planning",
        "mode": "planning",
        "user_id": "alice",
        "agent_id": "travel-bot",
        "messages": [
            ("user", "I want to plan a 5-day trip to Lisbon in May on a budget of 1500 EUR."),
            ("assistant", "Here is a plan:\n1. Book flights\n2. Book a hotel in Alfama\n3. Plan day trips to Sintra"),
            ("user", "Done with step 1, flights are booked."),
        ],
        "content": {
            "summary": "Alice is planning a 5-day trip to Lisbon in May with a 1500 EUR budget; flights are booked.",
            "goal": "Plan a 5-day budget trip to Lisbon in May",
            "plan": ["Book flights", "Book a hotel in Alfama", "Plan day trips to Sintra"],
            "progress": ["Book flights"],
        },
    },
    {
        "session_id": "demo-db-migration",
        "mode": "planning",
        "user_id": "bob",
        "agent_id": "devops-agent",
        "messages": [
            ("user", "Help me migrate our app from MySQL to PostgreSQL."),
            ("assistant", "Steps:\n1. Dump the schema\n2. Convert types\n3. Load data\n4. Switch the app over"),
        ],
        "content": {
            "summary": "Bob wants to migrate an application from MySQL to PostgreSQL.",
            "goal": "Migrate the app from MySQL to PostgreSQL",
            "plan": ["Dump the schema", "Convert types", "Load data", "Switch the app over"],
            "progress": [],
        },
    },
    {
        "session_id": "demo-billing-question",
        "mode": "summary",
        "user_id": "carol",
        "agent_id": "support-bot",
        "messages": [
            ("user", "I was charged twice for my subscription this month."),
            ("assistant", "I'm sorry about that. I can't issue refunds myself; let me get a person to help."),
        ],
        "content": {"summary": "Carol reports a double charge for her subscription this month; needs a refund."},
        "handoff": "Refund requests need a human.",
    },
    {
        "session_id": "demo-recipe-chat",
        "project": "kitchen",  # a second project: the editor works in both and switches in the top bar
        "mode": "summary",
        "user_id": "dave",
        "agent_id": "chef-bot",
        "messages": [
            ("user", "What can I cook with leeks and potatoes?"),
            ("assistant", "A classic leek and potato soup: sweat the leeks, add potatoes and stock, simmer, blend."),
        ],
        "content": {"summary": "Dave asked for a leek and potato recipe; the assistant suggested soup."},
    },
]


class Command(BaseCommand):
    help = "Create demo sessions, an admin account and an API key if the database is empty."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="where the service will be served")

    def handle(self, *args, **options):
        User = get_user_model()
        if SessionContext.objects.exists() or User.objects.exists():
            self.stdout.write("Database already has data: no demo data created.")
            self.stdout.write("Log in with the account created on first run (or: python manage.py createsuperuser).")
            return
        # One password each: the support login can be handed to someone without handing over the admin's.
        passwords = {name: secrets.token_urlsafe(12) for name in ("admin", "editor", "support")}
        admin = User.objects.create_superuser("admin", "admin@example.com", passwords["admin"])
        for role in ("editor", "support"):
            person = User.objects.create_user(role, f"{role}@example.com", passwords[role])
            person.groups.add(Group.objects.get(name=role))
            services.membership_set(project=Project.default(), user=person, role=role)
        kitchen, _ = services.project_get_or_create(slug="kitchen", name="Kitchen (demo)")
        services.membership_set(project=kitchen, user=User.objects.get(username="editor"), role="support")
        _, raw_key = services.api_key_create(name="demo agent", scopes=["read", "write"], created_by=admin)
        actor = Actor.system("demo")
        for demo in DEMO:
            project = kitchen if demo.get("project") == "kitchen" else None  # None: the default project
            session, _ = services.session_get_or_create(
                session_id=demo["session_id"], project=project, mode=demo["mode"], user_id=demo["user_id"],
                agent_id=demo["agent_id"])
            appended = services.messages_append(session=session, messages=[
                {"role": role, "content": content} for role, content in demo["messages"]
            ])
            services.snapshot_update(session=session, expected_version=session.version, changes=demo["content"],
                                     source="admin", actor=actor, reason="demo data",
                                     cursor_seq=appended.stored[-1].seq)
            if demo.get("handoff"):
                services.handoff_request(session=session, reason=demo["handoff"], actor=actor)
        self.stdout.write(self.style.SUCCESS("Demo data created."))
        url = options["url"].rstrip("/")
        self.stdout.write(f"  Staff pages:  {url}/  (admin: {url}/admin/)")
        self.stdout.write("  Log in as (each may do what the one below it may, and more):")
        self.stdout.write(f"    admin   / {passwords['admin']}   everything, the admin site, API keys and users")
        self.stdout.write(f"    editor  / {passwords['editor']}   edit, reset and restore contexts; take over "
                          "a conversation from a colleague")
        self.stdout.write(f"    support / {passwords['support']}   read sessions, take, answer and hand back "
                          "conversations")
        self.stdout.write("  Projects: default, and kitchen (editor is support there: the top bar switches).")
        self.stdout.write(f"  API key (project default): {raw_key}")
        self.stdout.write("  These credentials are shown once; keep them.")
