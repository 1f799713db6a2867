"""Retention and erasure: sessions deleted with everything they hold, in short batches, with an audit row of counts.

Erasure is within one project (end user ids are each project's own); retention runs per project, each with its
own period (Project.retention_days, else SESSIONCTX_RETENTION_DAYS).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import readcache
from ..exceptions import InvalidInput
from ..infra.database import renew_database_deadline
from ..models import DataDeletion, Project, SessionContext
from ..selectors.governance import (
    COUNTED,
    deletion_preview,
    ordered_counts,
    sessions_of_user,
    sessions_untouched_since,
    zero_counts,
)
from .actors import Actor

logger = logging.getLogger(__name__)

_NAMES = {model._meta.label: name for model, name in COUNTED.items()}
Progress = Callable[[int], None]


def _delete_batch(ids: list[int], *, still_selected: QuerySet[SessionContext], record: DataDeletion,
                  skip_locked: bool) -> int:
    """Delete these sessions (those the rule still selects) in one short transaction; add the counts to `record`.

    The row lock makes a session being written right now either finish first (erasure waits for it) or be left
    for the next run (retention skips it: a session someone is writing is not untouched). The rule is asked again
    once the locks are held, in a statement of its own: the locking one saw the database as it was when it began,
    and a message that committed before it reached a row would otherwise go with the session. Nothing can commit
    to a locked session after that (a message's foreign key check waits for the lock).
    """
    with transaction.atomic():
        ids = list(SessionContext.objects.filter(pk__in=ids).select_for_update(skip_locked=skip_locked)
                   .values_list("pk", flat=True))
        locked = list(still_selected.filter(pk__in=ids).values_list("pk", "project_id", "session_id")) if ids else []
        if not locked:
            return 0
        pks = [pk for pk, _, _ in locked]
        _, per_model = SessionContext.objects.filter(pk__in=pks).delete()
        # The admin's history names a session by its id (which may hold an e-mail address): it goes with the
        # session, and the deletion's own record keeps a digest instead.
        LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(SessionContext),
                                object_id__in=[str(pk) for pk in pks]).delete()
        counts = record.counts
        for label, n in per_model.items():
            name = _NAMES.get(label, label)
            counts[name] = counts.get(name, 0) + n
        DataDeletion.objects.filter(pk=record.pk).update(counts=counts)
        for _, project_id, session_id in locked:
            # As session_delete does: cached answers for the session go once the delete commits.
            readcache.context_changed(project_id, session_id)
    return len(locked)


def _delete_all(selected: QuerySet[SessionContext], *, record: DataDeletion, batch_size: int, skip_locked: bool,
                progress: Progress | None) -> DataDeletion:
    last = 0
    while True:
        # Keyset over the primary key: skipped (locked) rows are not looked at again, and each batch is short.
        ids = list(selected.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        deleted = _delete_batch(ids, still_selected=selected, record=record, skip_locked=skip_locked)
        # Each batch is short, the whole may not be (a user with thousands of sessions, erased by a web request):
        # the web's database deadline bounds a batch, not the erasure.
        renew_database_deadline()
        if progress is not None:
            progress(deleted)
        last = ids[-1]
    record.refresh_from_db()
    record.counts = ordered_counts(record.counts)
    return record


def retention_cutoff(older_than: timedelta, *, now=None):
    if older_than <= timedelta(0):
        raise InvalidInput("The retention period must be longer than zero.")
    try:
        return (now or timezone.now()) - older_than
    except OverflowError:  # a period kept "for ever" reaches past year 1: no session is that old
        return datetime.min.replace(tzinfo=UTC)


def sessions_purge(*, older_than: timedelta, actor: Actor, project: Project | None = None,
                   batch_size: int | None = None, dry_run: bool = False, now=None,
                   progress: Progress | None = None) -> tuple[dict[str, int], DataDeletion | None]:
    """Delete sessions of `project` (None: of every project) untouched for `older_than` with everything they hold;
    answers the counts and the audit row (None for a dry run, which only counts, and when there was nothing to
    delete)."""
    cutoff = retention_cutoff(older_than, now=now)
    selected = sessions_untouched_since(cutoff, project=project)
    if dry_run:
        return deletion_preview(selected), None
    if not selected.exists():
        # The hourly purge usually finds nothing: no audit row for that, or they would bury the real ones.
        return zero_counts(), None
    record = DataDeletion.objects.create(
        kind=DataDeletion.Kind.RETENTION, project=project, actor=actor.label[:255], counts=zero_counts(),
        criteria={"untouched_since": cutoff.isoformat(), "older_than_seconds": int(older_than.total_seconds())})
    record = _delete_all(selected, record=record, batch_size=batch_size or settings.SESSIONCTX_DELETE_BATCH_SIZE,
                         skip_locked=True, progress=progress)
    logger.info("retention: %s deleted by %s", record.counts, actor.label)
    return record.counts, record


def retention_days(project: Project) -> int:
    """The project's retention period in days; 0: off."""
    return project.retention_days if project.retention_days is not None else settings.SESSIONCTX_RETENTION_DAYS


def sessions_purge_by_setting(*, now=None) -> dict[str, int]:
    """The periodic purge: each project by its own period (Project.retention_days, else
    SESSIONCTX_RETENTION_DAYS); a project whose period is 0 is left alone. Answers the counts over all projects."""
    total = zero_counts()
    for project in Project.objects.order_by("pk"):
        days = retention_days(project)
        if days <= 0:
            continue
        # A period longer than timedelta holds (the column allows 2**31 - 1 days) is as long as the calendar.
        counts, _ = sessions_purge(older_than=timedelta(days=min(days, timedelta.max.days)),
                                   actor=Actor.system("retention"),
                                   project=project, now=now)
        for name, n in counts.items():
            total[name] += n
    return total


def user_id_digest(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def session_erase(*, session: SessionContext, actor: Actor) -> DataDeletion:
    """Erase one session with everything it holds, recorded as an erasure with a SHA-256 of its session id."""
    record = DataDeletion.objects.create(
        kind=DataDeletion.Kind.ERASURE, project_id=session.project_id, actor=actor.label[:255], counts=zero_counts(),
        criteria={"session_id_sha256": user_id_digest(session.session_id)})
    return _delete_all(SessionContext.objects.filter(pk=session.pk), record=record, batch_size=1, skip_locked=False,
                       progress=None)


def user_erase(*, user_id: str, actor: Actor, project: Project | None = None,
               batch_size: int | None = None, progress: Progress | None = None) -> DataDeletion:
    """Erase every session of an end user in `project` (default: the `default` project) with its messages,
    revisions, runs, handoff events, events and their webhook deliveries. Idempotent: a second call deletes
    nothing and answers zero counts (and is recorded)."""
    project = project or Project.default()
    selected = sessions_of_user(user_id, project=project)
    record = DataDeletion.objects.create(
        kind=DataDeletion.Kind.ERASURE, project=project, actor=actor.label[:255], counts=zero_counts(),
        criteria={"user_id_sha256": user_id_digest(user_id)})
    record = _delete_all(selected, record=record, batch_size=batch_size or settings.SESSIONCTX_DELETE_BATCH_SIZE,
                         skip_locked=False, progress=progress)
    logger.info("erasure of a user's sessions by %s: %s", actor.label, record.counts)
    return record
