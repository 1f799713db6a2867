"""Forms of the staff pages: they parse input; services decide and write."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings

from contexts import selectors
from contexts.exceptions import InvalidInput
from contexts.models import Mode, SessionContext, Status
from contexts.selectors import SESSION_SORTS
from contexts.services.locks import LOCKABLE_FIELDS
from contexts.snapshot import NOTE_MAX_CHARS, REASON_MAX_CHARS


def first_error(form: forms.Form) -> InvalidInput:
    """A form's errors as the one application error type the pages know how to show."""
    fields = {name: " ".join(str(e) for e in errors) for name, errors in form.errors.items()}
    name, text = next(iter(fields.items()))
    label = "" if name == "__all__" else f"{form.fields[name].label or name.replace('_', ' ').capitalize()}: "
    return InvalidInput(f"{label}{text}", details={"fields": fields})


class SessionFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=255, label="Search")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Status.choices])
    mode = forms.ChoiceField(required=False, choices=[("", "Any mode"), *Mode.choices])
    agent = forms.CharField(required=False, max_length=255)
    needs_human = forms.BooleanField(required=False, label="Needs a human")
    sort = forms.ChoiceField(required=False, choices=[(s, s) for s in SESSION_SORTS])
    after = forms.CharField(required=False, max_length=300)
    before = forms.CharField(required=False, max_length=300)

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "q": data.get("q", ""),
            "status": data.get("status", ""),
            "mode": data.get("mode", ""),
            "agent_id": data.get("agent", ""),
            "needs_human": data.get("needs_human", False),
        }


class ContextEditForm(forms.Form):
    """Summary, goal and extra progress as fields; plan rows come as parallel lists (see plan_from)."""

    version = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    # Opening the form (htmx swaps it in place of the link that had the focus) puts the keyboard in its first field.
    summary = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5, "autofocus": True}))
    goal = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    other_progress = forms.CharField(
        required=False, label="Other progress (one per line)", widget=forms.Textarea(attrs={"rows": 2})
    )
    reason = forms.CharField(required=False, max_length=REASON_MAX_CHARS)

    @classmethod
    def for_session(cls, session: SessionContext, progress: Any = None) -> ContextEditForm:
        """The form filled with the session's current snapshot, at the version the save will expect."""
        progress = progress if progress is not None else selectors.plan_progress(session)
        return cls(initial={
            "version": session.version, "summary": session.summary, "goal": session.goal,
            "other_progress": "\n".join(progress.other_progress),
        })

    @staticmethod
    def plan_from(data, shown: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """(plan, completed steps) from rows of step_id / step_text / step_done; empty rows are removed.

        `shown`: the plan the form was filled from (row "r1" is its first step). A step with a line break (an
        agent may write one) comes back from the browser's one-line input without it: left as it was, the step
        is kept as it is, else a save that changed nothing would rewrite it."""
        ids, texts = data.getlist("step_id"), data.getlist("step_text")
        done_ids = set(data.getlist("step_done"))
        plan, done = [], []
        for row_id, text in zip(ids, texts, strict=False):
            text = text.strip()
            if not text:
                continue
            row = re.fullmatch(r"r([0-9]{1,4})", row_id)
            if row and 0 < int(row[1]) <= len(shown) and _as_one_line(shown[int(row[1]) - 1]) == text:
                text = shown[int(row[1]) - 1]
            plan.append(text)
            if row_id in done_ids:
                done.append(text)
        return plan, done

    def changes(self, data, progress: list[str] | None = None, shown_plan: Sequence[str] = ()) -> dict[str, Any]:
        """The snapshot fields the form posted; `progress` and `shown_plan`, the session's lists the form was
        filled from."""
        plan, done = self.plan_from(data, shown_plan)
        other = [line.strip() for line in self.cleaned_data["other_progress"].splitlines() if line.strip()]
        return {
            "summary": self.cleaned_data["summary"],
            "goal": self.cleaned_data["goal"],
            "plan": plan,
            "progress": _progress_in_order(progress or [], done, [p for p in other if p not in done]),
        }


def _as_one_line(step: str) -> str:
    """A step as a browser's text input holds it: line breaks removed (HTML's value sanitization), then stripped."""
    return step.replace("\r", "").replace("\n", "").strip()


def _progress_key(item: Any) -> str:
    return str(item).strip().casefold()  # as selectors.plan_progress matches a progress item to a plan step


def _progress_in_order(before: list[str], done: list[str], other: list[str]) -> list[str]:
    """The progress list from the ticked steps and the other lines, in the order `before` has them.

    The progress list is in the order the steps were done, which the plan rows cannot show: an item whose step is
    still ticked keeps its place and its wording, repeats included (else a save that changed nothing would be a
    new version), an item over several lines stays one while its lines are there in a row, the other lines take
    the places of the other lines in the order they are typed, and what is new follows."""
    ticked = {_progress_key(step): step for step in done}
    kept = set()
    other_left = list(other)
    out = []
    for item in before:
        key = _progress_key(item)
        lines = [line.strip() for line in str(item).splitlines() if line.strip()]
        if key in ticked:
            kept.add(key)
            out.append(item)
        elif len(lines) > 1 and [_progress_key(line) for line in other_left[:len(lines)]] == [
                _progress_key(line) for line in lines]:
            del other_left[:len(lines)]
            out.append(item)
        elif other_left and key in {_progress_key(line) for line in other_left}:
            out.append(other_left.pop(0))
    return out + [step for key, step in ticked.items() if key not in kept] + other_left


class NoteForm(forms.Form):
    note = forms.CharField(max_length=NOTE_MAX_CHARS, widget=forms.Textarea(attrs={"rows": 2}))


class ReplyForm(forms.Form):
    content = forms.CharField(label="Reply", max_length=settings.SESSIONCTX_MAX_MESSAGE_CHARS,
                              widget=forms.Textarea(attrs={"rows": 3}))


class OptionalNoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=1000)


class RevertForm(forms.Form):
    to_version = forms.IntegerField(min_value=1)
    expected_version = forms.IntegerField(min_value=0)
    reason = forms.CharField(max_length=REASON_MAX_CHARS)


class ResetForm(forms.Form):
    expected_version = forms.IntegerField(min_value=0)
    reason = forms.CharField(max_length=REASON_MAX_CHARS)
    confirm = forms.BooleanField(label="I understand this empties the context", required=True,
                                 error_messages={"required": "Tick the confirmation box to reset."})


class LocksForm(forms.Form):
    fields_locked = forms.MultipleChoiceField(required=False, label="Locked fields",
                                              choices=[(name, name.capitalize()) for name in LOCKABLE_FIELDS])
    reason = forms.CharField(required=False, max_length=REASON_MAX_CHARS)
    # The locks the page showed ("plan,summary"; "" for none): a change by someone else since is not undone.
    locks_shown = forms.CharField(required=False, max_length=100)

    def clean_locks_shown(self) -> set[str] | None:
        if "locks_shown" not in self.data:
            return None
        return {name for name in self.cleaned_data["locks_shown"].split(",") if name}


class ProposalForm(forms.Form):
    field = forms.ChoiceField(choices=[(name, name) for name in LOCKABLE_FIELDS])
    expected_version = forms.IntegerField(min_value=0, required=False)
    # When the proposal shown was made: a newer one (another extraction since) is not accepted unseen.
    proposed_at = forms.DateTimeField(required=False)
