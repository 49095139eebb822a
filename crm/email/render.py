"""Render a saved template in jinja2's sandbox (subject, HTML, text).

``ImmutableSandboxedEnvironment`` refuses attribute access to internals (``__class__``,
``mro``...) and mutation of what it is given; ``StrictUndefined`` makes a missing
variable an error instead of an empty string, so an email never goes out with a hole.
The HTML environment autoescapes (a customer's name cannot inject markup); the subject
and text do not (they are not HTML). Compiled templates are cached per template
version, so a campaign compiles once per container.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

# jinja2's sandbox caps range() at MAX_RANGE items; a loop over anything larger fails
MAX_RANGE = 10_000


@lru_cache(maxsize=2)
def environment(html: bool) -> ImmutableSandboxedEnvironment:
    import jinja2.sandbox

    jinja2.sandbox.MAX_RANGE = MAX_RANGE  # process-wide: only templates use jinja2 here
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=html)


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


@lru_cache(maxsize=256)
def _compiled(key: tuple[str, int, str], source: str, html: bool) -> Any:
    return environment(html).from_string(source)


def render_parts(key: tuple[str, int], subject: str, html: str, text: str, variables: dict[str, Any]) -> Rendered:
    """Render the three parts; ``key`` (template id, version) names the compiled cache
    entry. Raises jinja2's TemplateError (a sandbox refusal, a missing variable)."""
    return Rendered(
        subject=_compiled((*key, "subject"), subject, False).render(variables).strip(),
        html=_compiled((*key, "html"), html, True).render(variables),
        text=_compiled((*key, "text"), text, False).render(variables),
    )


def render(template: Any, variables: dict[str, Any]) -> Rendered:
    """Render a ``crm.storage.TemplateItem`` with ``variables`` (crm/email/variables.py)."""
    key = (template.template_id, int(template.version or 0))
    return render_parts(key, template.subject, template.html, template.text, variables)
