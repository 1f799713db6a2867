"""Times on the staff pages: `{{ t|when }}` (the absolute time) and `{{ t|ago }}` (how long ago), both in the viewer's
time zone (ViewerTimeZoneMiddleware) with the zone named, in a <time> whose tooltip is the full absolute time."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import formats, timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.timesince import timesince

register = template.Library()

FULL = "Y-m-d H:i:s T"  # the tooltip: to the second


def _time(value: dt.datetime, text: str):
    local = timezone.localtime(value)
    title = f"{date_format(local, FULL)} ({timezone.get_current_timezone_name()})"
    return format_html('<time datetime="{}" title="{}">{}</time>', value.astimezone(dt.UTC).isoformat(), title, text)


@register.filter
def when(value: dt.datetime | None):
    if not value:
        return ""
    # DATETIME_FORMAT (contexts/web/formats), as the admin shows times.
    return _time(value, formats.date_format(timezone.localtime(value), "DATETIME_FORMAT"))


@register.filter
def ago(value: dt.datetime | None):
    if not value:
        return ""
    # Under a minute (or a clock a little ahead) timesince says "0 minutes", which reads like a bug.
    if timezone.now() - value < dt.timedelta(minutes=1):
        return _time(value, "just now")
    return _time(value, f"{timesince(value)} ago")
