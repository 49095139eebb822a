"""Template validation at save and rendering limits (crm/email/templates.py validate,
crm/email/render.py, crm/email/text.py): no I/O."""
from __future__ import annotations

import time

import pytest
from jinja2 import UndefinedError
from jinja2.sandbox import SecurityError

from crm.email import render, templates, text
from crm.errors import Invalid

FOOTER = '<p>{{ postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'


def check(html: str, *, kind: str = "transactional", subject: str = "Hi", text_part: str | None = None):
    return templates.validate(kind, subject, html, text_part)


def refused(html: str, **kw) -> Invalid:
    with pytest.raises(Invalid) as info:
        check(html, **kw)
    return info.value


def test_valid_template_uses_every_variable():
    html = ("<p>{{ customer.name.given }} {{ customer.email }} {{ customer.metrics.orders.count }}"
            "{{ customer.loyalty.balance }} {{ customer.attributes.shoe_size }} {{ tenant.name }}"
            "{{ event.cart.total }}</p>" + FOOTER)
    _, derived, was_derived = check(html, kind="marketing")
    assert was_derived and "{{ customer.name.given }}" in derived


@pytest.mark.parametrize("html, code, line", [
    ("<p>\n{{ customer.name.given }</p>", "template_syntax", 2),
    ("<p>\n\n{% for x in customer.tags %}</p>", "template_syntax", 3),
    ("<p>{{ custmer }}</p>", "unknown_variable", 1),
    ("<p>\n{{ customer.nme }}</p>", "unknown_variable", 2),
    ("<p>\n{{ customer.name.nickname }}</p>", "unknown_variable", 2),
    ("<p>{% include 'x.html' %}</p>", "template_unsupported", 1),
])
def test_errors_name_the_line(html, code, line):
    err = refused(html)
    assert (err.extra["code"], err.extra["line"], err.field) == (code, line, "html"), err.detail
    assert f"line {line}" in err.detail


@pytest.mark.parametrize("html", [
    "{{ tenant.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ customer.mro }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ tenant['__class__'] }}",
    "{{ tenant|attr('__class__') }}",
    "{{ customer.tags|map(attribute='__class__')|list }}",
    "{% set f = customer.email.format_map %}{{ f }}",
])
def test_sandbox_escapes_are_refused_at_save(html):
    assert refused(html).extra["code"] == "template_unsafe"


@pytest.mark.parametrize("html", [
    "{% for i in range(10**9) %}{{ i }}{% endfor %}",
    "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 10 ** 100000 }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:999999999}'.format(1) }}",
    "{% set s = 'xxxxxxxxxx' %}" + "{% set s = s ~ s %}" * 30 + "{{ s }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
])
def test_unbounded_work_is_refused_at_save(html):
    started = time.monotonic()
    assert refused(html).extra["code"] in ("template_limit", "template_unsafe")
    assert time.monotonic() - started < 3


def test_render_refuses_at_send_what_the_data_makes_unbounded():
    """A loop without a call in it, over data long enough to run forever, stops at the
    deadline; output stops at its cap."""
    env = render.environment(False)
    loop = env.from_string("{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}")
    started = time.monotonic()
    with pytest.raises(render.TemplateLimit):
        render.run(loop, {"s": "x" * 5000}, seconds=0.3)
    assert time.monotonic() - started < 2
    with pytest.raises(render.TemplateLimit):
        render.run(env.from_string("{% for i in range(9000) %}{{ s }}{% endfor %}"), {"s": "x" * 90_000})
    with pytest.raises(SecurityError):
        render.render_parts(("tpl", 1), "{{ c.__class__ }}", "", "", {"c": {}})
    with pytest.raises(UndefinedError):
        render.render_parts(("tpl", 2), "{{ c.nope }}", "", "", {"c": {}})


@pytest.mark.parametrize("source, values", [
    ("{{ 100 / n }}", {"n": 0}),                 # one customer's zero
    ("{{ '%d' % s }}", {"s": "text"}),           # a format the data does not fit
    ("{{ s | round }}", {"s": "text"}),          # a filter the data does not fit
])
def test_what_the_data_breaks_is_a_template_error(source, values):
    """A sound template one customer's data breaks fails as a TemplateError, the error the
    sender records as that recipient's failure (crm/email/sending.py), not the batch's."""
    from jinja2 import TemplateError

    with pytest.raises(TemplateError) as caught:
        render.render_parts(("tpl", 3), source, "", "", values)
    assert type(caught.value).__name__ == "TemplateRuntimeError", caught.value


def test_marketing_needs_unsubscribe_and_postal_address():
    for missing in ("unsubscribe_url", "postal_address"):
        html = FOOTER.replace("{{ " + missing + " }}", "")
        err = refused(html, kind="marketing")
        assert err.extra["code"] == "missing_required_variable" and missing in err.detail
    err = refused(FOOTER, kind="marketing", text_part="no link here")
    assert err.field == "text"
    check(FOOTER, kind="marketing", text_part="{{ postal_address }} {{ unsubscribe_url }}")
    check("<p>Receipt</p>", kind="transactional")


def test_css_is_inlined_around_template_tags():
    html = ("<style>td { color: red } .b { font-weight: bold }</style><table>{% for t in customer.tags %}"
            '<tr><td class="b">{{ t }}</td></tr>{% endfor %}</table><p>{{ 1 < 2 }}</p>'
            '<a href="{{ unsubscribe_url }}" {% if customer.email %}title="x"{% endif %}>u</a>')
    inlined, _, _ = check(html)
    assert 'style="color: red;font-weight: bold;"' in inlined or 'style="font-weight: bold;color: red;"' in inlined
    assert "{% for t in customer.tags %}" in inlined and "</tr>{% endfor %}" in inlined  # still in the table
    assert inlined.index("<table>") < inlined.index("{% for t") < inlined.index("</table>")
    assert "{{ 1 < 2 }}" in inlined and 'href="{{ unsubscribe_url }}"' in inlined
    assert "{% if customer.email %}" in inlined
    out = render.environment(True).from_string(inlined).render(
        customer={"tags": ["a", "b"], "email": "x@y.z"}, unsubscribe_url="https://u/1")
    assert out.count("<tr>") == 2 and 'href="https://u/1"' in out and "True" in out


def test_text_derivation():
    html = """<html><head><title>T</title><style>p{}</style></head><body>
    <h1>Hello   {{ customer.name.given }}</h1>
    <p>Line one<br>line two &amp; more</p>
    <ul><li>One</li><li>Two</li></ul><ol><li>First</li><li>Second</li></ol>
    <p><a href="https://shop.example/sale">Shop the sale</a> · <a href="https://x.example">https://x.example</a></p>
    <table><tr><td>A</td><td>B</td></tr></table><!-- hidden --><script>alert(1)</script>
    </body></html>"""
    assert text.from_html(html) == (
        "Hello {{ customer.name.given }}\n\nLine one\nline two & more\n\n- One\n- Two\n\n1. First\n2. Second\n\n"
        "Shop the sale (https://shop.example/sale) · https://x.example\n\nA B\n")
