"""Input and output serializers of the agent REST API: explicit fields, strict types.

Inputs check shapes and types only; the services check bounds and state, so the API, the staff
pages and the tasks refuse the same things.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from ..models import UPDATE_POLICY_PATTERN, Event, ExtractionRun, Message, Mode, Revision, SessionContext, Status

# Named for the schema's enum components (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
RunStatus = ExtractionRun.Status

# --- strict fields: JSON types are not coerced (5 is not a string, "5" is not a number) ----------


# For the schema (RegexValidator becomes the field's pattern) what DRF refuses anyway: NUL characters, and for a
# field that may not be blank a value of whitespace alone (Python's, which DRF strips, spelled out for JSON Schema).
_PY_SPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
class SchemaPattern(RegexValidator):
    """A pattern for the schema that, when checking, leaves a NUL character to DRF's own validator: it would
    otherwise be reported twice ("Null characters are not allowed." twice, or with a "May not be blank." that
    is not so)."""

    def __call__(self, value):
        if "\x00" not in str(value):
            super().__call__(value)


# `+`: drf-spectacular offers a blank value as a oneOf branch of its own, so this one must not match it too.
NO_NUL = SchemaPattern(r"^[^\x00]+$", "Null characters are not allowed.")
NOT_BLANK = SchemaPattern(rf"^[^\x00]*[^\x00{_PY_SPACE}][^\x00]*$", "May not be blank.")


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(NO_NUL if self.allow_blank else NOT_BLANK)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know instead of ignoring them."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def _owner_field(help_text: str):
    return StrictCharField(required=False, allow_blank=True, max_length=255, help_text=help_text)


# --- errors -------------------------------------------------------------------------------------


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `version_conflict`.")
    message = serializers.CharField(help_text="A sentence for people.")
    details = serializers.DictField(help_text="Structured details: `fields`, `current_version`, ...")


class ErrorSerializer(serializers.Serializer):
    """The one shape of every API error."""

    error = ErrorBodySerializer()


# --- sessions -----------------------------------------------------------------------------------


class QueryFilterSerializer(serializers.Serializer):
    """Query parameters. One given but blank (`user_id=`, `user_id=%20`, `after_seq=`) is refused: DRF reads an
    empty value of an optional field as no filter at all, which is not what the caller asked for."""

    # Read by the pager and DRF's content negotiation, not by the filter.
    READ_ELSEWHERE = frozenset({"cursor", "limit", "format"})

    def to_internal_value(self, data):
        # A misspelled filter (`agentid=`) would otherwise list everything, as if none were given: refused, as
        # unknown body fields are.
        unknown = sorted(set(data) - set(self.fields) - self.READ_ELSEWHERE)
        if unknown:
            known = ", ".join(sorted(set(self.fields) | self.READ_ELSEWHERE))
            raise serializers.ValidationError({name: [f"Unknown query parameter; known: {known}."]
                                               for name in unknown})
        blank = sorted(name for name in self.fields if name in data and not str(data.get(name)).strip())
        if blank:
            raise serializers.ValidationError({name: ["May not be blank."] for name in blank})
        return super().to_internal_value(data)


class ContextReadQuerySerializer(QueryFilterSerializer):
    READ_ELSEWHERE = frozenset({"format"})  # not a list: no pager
    fresh = serializers.BooleanField(
        required=False, default=False,
        help_text="Wait (up to SESSIONCTX_FRESH_WAIT seconds) for an update of the messages the snapshot has not "
                  "seen yet; `X-Context-Fresh` says whether it has them all.")


class SessionFilterSerializer(QueryFilterSerializer):
    user_id = serializers.CharField(required=False, max_length=255)
    agent_id = serializers.CharField(required=False, max_length=255)
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    mode = serializers.ChoiceField(choices=Mode.choices, required=False)
    updated_after = serializers.DateTimeField(required=False, help_text="ISO 8601; only sessions changed after it.")


class SessionCreateInputSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=Mode.choices, required=False)
    user_id = _owner_field("The end user this conversation belongs to.")
    agent_id = _owner_field("The agent that talks in it.")
    team_id = _owner_field("The team that owns the agent.")
    update_policy = serializers.RegexField(
        rf"^(?:{UPDATE_POLICY_PATTERN})?$", required=False, allow_blank=True, max_length=32,
        help_text="When posted turns update the context: `every_turn`, `every_n_turns:N`, `idle:S` (quiet for S "
                  "seconds), `tokens:T` (unseen messages above T tokens); empty for the server's default. Unlike "
                  "the owners, a PUT changes it.")


class SessionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = SessionContext
        fields = ["session_id", "user_id", "agent_id", "team_id", "mode", "status", "version", "update_policy",
                  "created_at", "updated_at"]


ASSIGNEE_HELP = "Username of the person who owns the conversation, if any."


class ContextOutputSerializer(serializers.ModelSerializer):
    assignee = serializers.CharField(source="assignee.username", read_only=True, allow_null=True,
                                     help_text=ASSIGNEE_HELP)

    class Meta:
        model = SessionContext
        fields = ["session_id", "user_id", "agent_id", "team_id", "mode", "status", "assignee", "summary", "goal",
                  "plan", "progress", "handoff_note", "version", "created_at", "updated_at"]


# What a write answers a key without the read scope: enough to go on writing (the version) and to follow the
# conversation's state, nothing of the snapshot or its owners, which that key may not read.
WRITE_RECEIPT_FIELDS = ("session_id", "mode", "status", "version", "updated_at")


class ContextWriteOutputSerializer(ContextOutputSerializer):
    """A write's answer: the whole context for a key with the read scope, only WRITE_RECEIPT_FIELDS without it.

    For the schema only (answers are built by representations.py): the receipt's fields are required, the others
    optional, so both answers match it.
    """

    # Not read-only, or the schema would list them as always present.
    assignee = serializers.CharField(source="assignee.username", required=False, allow_null=True,
                                     help_text=ASSIGNEE_HELP)
    created_at = serializers.DateTimeField(required=False)

    def get_fields(self):
        fields = super().get_fields()
        for name, field in fields.items():
            field.required = name in WRITE_RECEIPT_FIELDS
        return fields


class PromptOutputSerializer(serializers.Serializer):
    prompt = serializers.CharField(help_text="The <session_context> block; empty when there is nothing to say.")
    version = serializers.IntegerField()


# --- writes to the snapshot -----------------------------------------------------------------------


class ContextWriteInputSerializer(StrictSerializer):
    """Snapshot fields an agent may write; `version` may stand in for the If-Match header."""

    summary = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    goal = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    plan = serializers.ListField(child=StrictCharField(), required=False, help_text="Steps, non-empty strings.")
    progress = serializers.ListField(child=StrictCharField(), required=False, help_text="Completed steps.")
    handoff_note = StrictCharField(required=False, allow_blank=True, trim_whitespace=False)
    mode = serializers.ChoiceField(choices=Mode.choices, required=False)
    version = StrictIntegerField(required=False, min_value=0,
                                 help_text="The version you read; alternative to the If-Match header.")
    reason = StrictCharField(required=False, allow_blank=True, max_length=2000,
                             help_text="Why; kept in the audit history.")


class ReasonInputSerializer(StrictSerializer):
    reason = StrictCharField(max_length=2000, help_text="Why; kept in the audit history.")


class RevertInputSerializer(ReasonInputSerializer):
    version = StrictIntegerField(required=False, min_value=0,
                                 help_text="The current version you read; alternative to the If-Match header.")


class ResetInputSerializer(RevertInputSerializer):
    pass


class RunRefSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ExtractionRun.Status.choices)


# --- history --------------------------------------------------------------------------------------


class RevisionOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Revision
        fields = ["version", "source", "actor", "reason", "created_at", "changed_fields", "snapshot"]


# --- messages -------------------------------------------------------------------------------------


class MessageInputSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = StrictCharField(allow_blank=True, trim_whitespace=False)
    # Kept as sent: "k" and "k " are two keys, and trimming one into the other would drop its message.
    idempotency_key = StrictCharField(required=False, allow_null=True, max_length=255, trim_whitespace=False,
                                      help_text="A retried message with the same key is stored once.")


class MessagesPostInputSerializer(StrictSerializer):
    messages = MessageInputSerializer(many=True, allow_empty=False)
    user_id = _owner_field("Recorded when the session is created (or had none).")
    agent_id = _owner_field("Recorded when the session is created (or had none).")
    mode = serializers.ChoiceField(choices=Mode.choices, required=False, help_text="Used when creating the session.")


class StoredMessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["seq", "role", "idempotency_key"]


class MessagesPostOutputSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    created = serializers.BooleanField(help_text="True when this post created the session.")
    stored = StoredMessageSerializer(many=True)
    duplicates = serializers.IntegerField(
        help_text="Messages whose idempotency key was already stored or came earlier in the batch.")
    update = RunRefSerializer(allow_null=True, help_text="The queued context update, when this batch queued one.")


class MessageOutputSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True, allow_null=True, default=None,
                                   help_text="The staff member who wrote it (a reply from the handoff desk); "
                                             "null for the agent's messages.")

    class Meta:
        model = Message
        fields = ["seq", "role", "content", "idempotency_key", "author", "created_at"]


class MessageFilterSerializer(QueryFilterSerializer):
    after_seq = serializers.IntegerField(required=False, min_value=0, help_text="Only messages after this seq.")


# --- events ---------------------------------------------------------------------------------------


class NoQuerySerializer(QueryFilterSerializer):
    """For a read that takes no query parameter: a misspelled one is refused (400, naming it), not ignored."""

    READ_ELSEWHERE = frozenset({"format"})


# Comma-separated known event types, nothing else: the schema's pattern is the check.
EVENT_TYPES_PATTERN = "^({0})(,({0}))*$".format("|".join(re.escape(t) for t in Event.Type.values))


class EventFilterSerializer(QueryFilterSerializer):
    READ_ELSEWHERE = frozenset({"format"})  # paged by `after` and its own `limit`, not by a cursor
    after = serializers.IntegerField(required=False, min_value=0, default=0,
                                     help_text="The last event id you saw: only later events are listed.")
    session_id = serializers.RegexField(r"^[A-Za-z0-9._:@-]{1,255}$", required=False,
                                        help_text="Only this session's events.")
    types = serializers.RegexField(EVENT_TYPES_PATTERN, required=False,
                                   help_text="Comma-separated event types, e.g. "
                                             "`handoff.released,message.staff_reply`.",
                                   # The pattern is checked first: its message must say what is known.
                                   error_messages={"invalid": "Comma-separated event types, each one of: "
                                                              f"{', '.join(Event.Type.values)}."})
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)
    wait = serializers.FloatField(required=False, min_value=0, default=0,
                                  help_text="Long-poll: when nothing is new, wait up to this many seconds "
                                            "(more waits SESSIONCTX_EVENTS_MAX_WAIT, 30 by default) for an event.")

    def validate_types(self, value: str) -> list[str]:
        types = [t.strip() for t in value.split(",") if t.strip()]
        unknown = sorted(set(types) - set(Event.Type.values))
        if unknown or not types:
            raise serializers.ValidationError(f"Unknown event types: {', '.join(unknown) or value!r}. "
                                              f"Known: {', '.join(Event.Type.values)}.")
        return types

    def validate_wait(self, value: float) -> float:
        # Above the server's bound waits the bound, as a long `limit` gives the most: a client's default (25 s)
        # must not fail against a server configured to wait less.
        if not math.isfinite(value):
            raise serializers.ValidationError("A number of seconds.")
        return min(value, float(settings.SESSIONCTX_EVENTS_MAX_WAIT))


class EventOutputSerializer(serializers.ModelSerializer):
    session_id = serializers.CharField(source="session.session_id", read_only=True)
    type = serializers.ChoiceField(choices=Event.Type.choices)
    data = serializers.DictField(help_text="What happened: `version` for context.updated; `status`, `assignee`, "
                                           "`reason` (and `note` on release) for handoff events; `seq`, "
                                           "`content`, `author` for a staff reply.")

    class Meta:
        model = Event
        fields = ["id", "type", "session_id", "created_at", "data"]


class EventListOutputSerializer(serializers.Serializer):
    events = EventOutputSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Send it as `after` to get what comes next.")
    has_more = serializers.BooleanField(help_text="More events are ready now: ask again at once.")


# --- runs and health ------------------------------------------------------------------------------


class RunOutputSerializer(serializers.ModelSerializer):
    session_id = serializers.CharField(source="session.session_id", read_only=True)
    superseded_by = serializers.UUIDField(
        source="superseded_by_id", read_only=True, allow_null=True,
        help_text="With status superseded: the run that took over this run's messages after its worker died.")

    class Meta:
        model = ExtractionRun
        fields = ["id", "session_id", "status", "trigger", "extractor", "model", "prompt_tokens",
                  "completion_tokens", "prompt_chars", "latency_ms", "model_calls", "attempts", "chunks", "error",
                  "first_seq",
                  "last_seq", "from_version", "to_version", "superseded_by", "request_id", "created_at",
                  "started_at", "finished_at"]


class HealthOutputSerializer(serializers.Serializer):
    status = serializers.CharField()
    checks = serializers.DictField(child=serializers.CharField())


class HealthLiveOutputSerializer(serializers.Serializer):
    status = serializers.CharField()
