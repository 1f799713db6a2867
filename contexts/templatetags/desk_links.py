"""Links and forms between staff pages that stay in the project the page shows.

`{% desk_url 'session_detail' s.session_id %}` is that page's address with `?project=<slug>` (and any keyword as a
further query parameter), escaped; `{% project_field %}` is a form's hidden `page_project`."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

register = template.Library()


@register.simple_tag(takes_context=True)
def desk_url(context, name: str, *args, **query) -> str:
    project = context.get("current_project")
    params = {"project": project.slug} if project is not None else {}
    params.update(query)
    url = reverse(name, args=args)
    return f"{url}?{urlencode(params)}" if params else url


@register.simple_tag(takes_context=True)
def project_field(context) -> str:
    """A form's hidden `page_project`: the project of the page it was posted from, so the answer stays there."""
    project = context.get("current_project")
    if project is None:
        return ""
    return format_html('<input type="hidden" name="page_project" value="{}">', project.slug)
