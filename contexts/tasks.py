"""Celery tasks. Tasks take ids and call services."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


def enqueue_extraction(run_id: str) -> None:
    """Send a queued run to the workers (called on commit)."""
    extract_context.delay(run_id)


@shared_task(name="contexts.extract_context")
def extract_context(run_id: str) -> None:
    raise NotImplementedError("extraction lands with issue 4")
