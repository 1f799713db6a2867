"""Sessions: the snapshot edit form (saved through contexts.services as a new revision), locks and proposals,
and the read-only revisions, messages and handoff events."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from contexts import services
from contexts.exceptions import ApplicationError
from contexts.models import HandoffEvent, LockChange, Message, Proposal, Revision, SessionContext
from contexts.services import Actor
from contexts.services.locks import LOCKABLE_FIELDS, locked_fields, locks_set
from contexts.snapshot import REASON_MAX_CHARS, validate_snapshot

from .base import ProjectScopedAdmin, ReadOnlyAdminMixin
from .governance import UserErasureMixin

CONTENT_FIELDS = ("mode", "summary", "goal", "plan", "progress", "handoff_note")


class RevisionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Revision
    fields = ("version", "source", "actor", "reason", "changed_fields", "created_at")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    max_num = 0
    show_change_link = True


class ProposalInline(ReadOnlyAdminMixin, admin.TabularInline):
    """What extractions would have written to locked fields; accept or dismiss them on the staff session page."""

    model = Proposal
    fields = ("field", "value", "from_run", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0


class LockChangeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = LockChange
    verbose_name_plural = "Lock changes (fields locked after each)"
    fields = ("fields", "reason", "actor", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0


class StepsField(forms.CharField):
    """A plan or progress list edited as text, one step per line (blank lines dropped)."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 80})

    def prepare_value(self, value: Any) -> str:
        return "\n".join(value) if isinstance(value, list) else super().prepare_value(value)

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    def has_changed(self, initial: Any, data: Any) -> bool:
        # Judged on the text as shown: a step an agent wrote with a line break shows as two lines, and a save that
        # left the box alone must keep it one step (and write no revision), not split it.
        return self.to_python(self.prepare_value(initial or [])) != self.to_python(data)


class SessionContextForm(forms.ModelForm):
    plan = StepsField(required=False, help_text="One step per line.")
    progress = StepsField(required=False, help_text="One done step per line.")
    # The version the page was loaded at: a save from a stale page is refused, not applied.
    loaded_version = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(required=False, max_length=REASON_MAX_CHARS,
                             help_text="Kept with the revision this edit writes.")
    locked_fields = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, choices=[(n, n.capitalize()) for n in LOCKABLE_FIELDS],
        help_text="Model updates leave a locked field alone and propose instead; agents' writes to it get 423.")
    lock_reason = forms.CharField(required=False, max_length=REASON_MAX_CHARS, help_text="Required to lock a field.")
    # The locks the page was loaded with: the boxes' starting state, and what a save checks is still so.
    locks_loaded = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = SessionContext
        fields = (*CONTENT_FIELDS, "update_policy")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The policy is not versioned (an agent's PUT changes it without a revision): whether the person changed it
        # is judged against the page as loaded, so a save from that page leaves an agent's newer policy alone.
        if "update_policy" not in self.fields:
            return  # a person who may only view the session: the page shows the values, no form
        self.fields["update_policy"].show_hidden_initial = True
        if self.instance.pk is not None:
            self.fields["loaded_version"].initial = self.instance.version
            loaded = sorted(locked_fields(self.instance))
            self.fields["locked_fields"].initial = loaded
            self.fields["locks_loaded"].initial = ",".join(loaded)
            if self.is_bound and "locks_loaded" in self.data:
                # The boxes as the page showed them, not as the locks are now: what the person changed is
                # what differs from that.
                self.fields["locked_fields"].initial = [n for n in self.data["locks_loaded"].split(",") if n]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            validate_snapshot({name: cleaned.get(name) for name in CONTENT_FIELDS if name in cleaned})
        except ApplicationError as exc:
            for name, text in exc.details.get("fields", {}).items():
                self.add_error(name if name in self.fields else None, text)
        if "locked_fields" in self.changed_data and cleaned.get("locked_fields") and not cleaned.get("lock_reason"):
            self.add_error("lock_reason", "A reason is required to lock a field.")
        shown = {name for name in (cleaned.get("locks_loaded") or "").split(",") if name}
        now_locked = locked_fields(self.instance) if self.instance.pk is not None else shown
        if "locks_loaded" in self.data and shown != now_locked:
            raise forms.ValidationError(
                "Someone changed this context's locks while you edited it (locked now: "
                f"{', '.join(sorted(now_locked)) or 'nothing'}). Nothing was saved; reload the page and apply "
                "your change again.")
        loaded = cleaned.get("loaded_version")
        current = SessionContext.objects.filter(pk=self.instance.pk).values_list("version", flat=True).first()
        if loaded is not None and current is not None and loaded != current:
            raise forms.ValidationError(
                f"This context changed while you edited it (now version {current}, you loaded {loaded}). "
                "Nothing was saved; reload the page and apply your change again.")
        return cleaned


@admin.register(SessionContext)
class SessionContextAdmin(UserErasureMixin, ProjectScopedAdmin):
    form = SessionContextForm
    row_noun = "session"
    list_display = ("session_id", "user_id", "agent_id", "mode", "status", "version", "updated_at")
    list_filter = ("status", "mode")
    search_fields = ("session_id", "user_id", "agent_id", "summary", "goal")
    show_full_result_count = False  # no COUNT(*) over a big table on every list page
    list_per_page = 50
    readonly_fields = ("project", "session_id", "user_id", "agent_id", "team_id", "status", "assignee",
                       "handoff_reason", "version", "last_message_seq", "cursor_seq", "created_at", "updated_at",
                       "transcript")
    fieldsets = (
        (None, {"fields": ("project", "session_id", "user_id", "agent_id", "team_id", "status", "assignee", "version",
                           "transcript")}),
        ("Snapshot (saved as a new revision)",
         {"fields": ("mode", "summary", "goal", "plan", "progress", "handoff_note", "reason", "loaded_version")}),
        ("Updates", {"fields": ("update_policy",)}),
        ("Locks", {"fields": ("locked_fields", "lock_reason", "locks_loaded")}),
        ("Bookkeeping", {"classes": ("collapse",),
                         "fields": ("handoff_reason", "last_message_seq", "cursor_seq", "created_at", "updated_at")}),
    )
    inlines = (ProposalInline, LockChangeInline, RevisionInline)
    actions = ("delete_selected", "erase_users")

    def get_queryset(self, request: HttpRequest) -> QuerySet[SessionContext]:
        return super().get_queryset(request).select_related("assignee")

    @admin.display(description="Transcript")
    def transcript(self, obj: SessionContext) -> str:
        # A link to the paged message list: a long conversation would not fit on this page.
        url = reverse("admin:contexts_message_changelist") + f"?session__id__exact={obj.pk}"
        return format_html('<a href="{}">{} messages</a>', url, obj.last_message_seq)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions come from agents through the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and request.user.has_perm("contexts.edit_context")

    def save_model(self, request: HttpRequest, obj: SessionContext, form: SessionContextForm, change: bool) -> None:
        if "update_policy" in form.changed_data:
            # Not part of the snapshot: no revision, no version check.
            services.session_update_policy_set(session=obj, update_policy=form.cleaned_data["update_policy"])
        if "locked_fields" in form.changed_data:
            shown = {name for name in form.cleaned_data.get("locks_loaded", "").split(",") if name}
            try:
                locks_set(session=obj, fields=form.cleaned_data["locked_fields"],
                          reason=form.cleaned_data["lock_reason"], actor=Actor.for_user(request.user),
                          shown=shown if "locks_loaded" in form.data else None)
            except ApplicationError as exc:
                # Raced between clean() and here: report it; the locks stay as the other editor left them.
                self.message_user(request, exc.message, level=messages.ERROR)
                return
        changes = {name: form.cleaned_data[name] for name in CONTENT_FIELDS if name in form.changed_data}
        if not changes:
            return
        try:
            services.snapshot_update(
                session=SessionContext.objects.get(pk=obj.pk), expected_version=form.cleaned_data["loaded_version"],
                changes=changes, source=Revision.Source.ADMIN, actor=Actor.for_user(request.user),
                reason=form.cleaned_data.get("reason", ""),
            )
        except ApplicationError as exc:
            # Raced between clean() and here: report it; the stored snapshot is untouched.
            self.message_user(request, exc.message, level=messages.ERROR)

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, model_count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        # Erasing a session (right to erasure) takes its history with it; read-only revisions do not block that.
        return deleted, model_count, set(), protected

    def delete_model(self, request: HttpRequest, obj: SessionContext) -> None:
        services.session_delete(session=obj, actor=Actor.for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SessionContext]) -> None:
        allowed = self.editable(request, queryset)
        skipped = queryset.exclude(pk__in=allowed.values("pk")).count()
        if skipped:
            self.message_user(request, f"{skipped} session(s) not deleted: deleting takes the editor role in their "
                                       "project.", level=messages.WARNING)
        for session in allowed:
            services.session_delete(session=session, actor=Actor.for_user(request.user))


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("session", "version", "source", "actor", "created_at")
    list_filter = ("source",)
    search_fields = ("session__session_id", "actor", "reason")
    list_select_related = ("session",)
    show_full_result_count = False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("session", "seq", "role", "author", "short_content", "created_at")
    list_filter = ("role",)
    search_fields = ("session__session_id",)
    list_select_related = ("session", "author")
    ordering = ("session", "seq")
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return obj.content if len(obj.content) <= 200 else obj.content[:200] + "…"


@admin.register(HandoffEvent)
class HandoffEventAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_path = "session__project"
    list_display = ("session", "kind", "actor", "created_at")
    list_filter = ("kind",)
    search_fields = ("session__session_id", "actor", "note")
    list_select_related = ("session",)
