"""The two staff roles as groups: support (view, handle handoffs) and editor (also edit/reset)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = [
    "view_sessioncontext", "view_revision", "view_message", "view_handoffevent", "view_extractionrun",
]
SUPPORT = VIEW + ["handle_handoff"]
EDITOR = SUPPORT + ["edit_context"]


def create_roles(apps, schema_editor):
    # Permissions are normally created after migrate; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in (("support", SUPPORT), ("editor", EDITOR)):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(Permission.objects.filter(content_type__app_label="contexts", codename__in=codenames))


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["support", "editor"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("contexts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
