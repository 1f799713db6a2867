"""An extraction's answer onto a snapshot that others changed while the model worked: a field-level three-way
merge, with the snapshot the extraction started from as the base."""

from __future__ import annotations

from typing import Any


def _added(base: list, ours: list) -> list | None:
    """What `ours` adds to `base`, if all it does is add (in base's order); else None."""
    remaining = iter(ours)
    if not all(any(item == step for step in remaining) for item in base):
        return None  # ours dropped or reordered something of base
    return [item for item in ours if item not in base]


def merge(*, base: dict[str, Any], theirs: dict[str, Any], ours: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the values to write, the fields that could not be merged).

    A field the writer did not touch takes the model's value; one the model did not change keeps the writer's.
    Where both changed it, the writer's value stands (a person or agent wrote it on purpose), except that a list
    the model only added to gets the model's additions appended. A field where the writer's value stands over
    a real change of the model's cannot be merged: the caller recomputes from the writer's snapshot, so no
    message's content is dropped.
    """
    merged: dict[str, Any] = {}
    unmerged: list[str] = []
    for name, value in ours.items():
        before, now = base.get(name), theirs.get(name)
        if now in (before, value):
            merged[name] = value
        elif value == before:
            merged[name] = now
        elif isinstance(value, list) and isinstance(now, list) and (added := _added(before or [], value)) is not None:
            merged[name] = now + [item for item in added if item not in now]
        else:
            merged[name] = now
            unmerged.append(name)
    return merged, unmerged
