"""Render a saved template in jinja2's sandbox (subject, HTML, text).

``ImmutableSandboxedEnvironment`` refuses attribute access to internals (``__class__``,
``mro``...) and mutation of what it is given; ``StrictUndefined`` makes a missing
variable an error instead of an empty string, so an email never goes out with a hole.
The HTML environment autoescapes (a customer's name cannot inject markup); the subject
and text do not (they are not HTML). Compiled templates are cached per template
version, so a campaign compiles once per container.

A template is the tenant's code running in our process, so every render is bounded
(docs/email.md, "Limits"):

* time: :data:`RENDER_SECONDS` of wall clock per part, checked at every call, operator,
  filter and loop iteration (each ``{% for %}`` body starts with a check inserted at
  compile time, so a loop with nothing in it is still interrupted);
* size: no value it computes (``*``, ``~``, ``+``, ``%``, a filter's or a method's
  result) may exceed :data:`MAX_VALUE` characters or items, widths and repeat counts
  are checked before the operation runs (``"x" * 10**9`` never allocates), integers are
  capped at :data:`MAX_INT_BITS` bits (``10**10**10`` never starts), and each rendered
  part stops at :data:`MAX_OUTPUT` characters;
* loops: ``range()`` draws from a budget of :data:`MAX_RANGE` items per render.

Every refusal is a :class:`TemplateLimit` (a jinja2 ``SecurityError``).
"""

from __future__ import annotations

import contextvars
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateRuntimeError, nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# jinja2's sandbox caps range() at MAX_RANGE items; a loop over anything larger fails
MAX_RANGE = 10_000
MAX_VALUE = 100_000  # characters (or items) of any one value a template computes
MAX_OUTPUT = 512 * 1024  # characters of one rendered part (Gmail clips an HTML body at 102 KB)
MAX_INT_BITS = 4096
MAX_WIDTH = 10_000  # a padding/repeat width given to a filter or method
RENDER_SECONDS = 2.0  # wall clock per rendered part
TEMPLATE_FILE = "<template>"  # jinja2's name of a template compiled from a string


class TemplateLimit(SecurityError):
    """The template went past a render limit (time, size, loop budget)."""


@dataclass
class _Budget:
    deadline: float
    range_left: int


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)
_SIZED = (str, bytes, list, tuple, dict)
_FORMAT_WIDTH = re.compile(r"\d{5,}|\*")  # a width or precision of 5+ digits (or taken from an argument)
_AMPLIFIERS = {"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "truncate", "format"}


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # outside run() (a template rendered directly): limits per call only
        return _Budget(time.monotonic() + RENDER_SECONDS, MAX_RANGE)
    return budget


def _tick() -> None:
    if time.monotonic() > _budget().deadline:
        raise TemplateLimit(f"the template took longer than {RENDER_SECONDS:g} s to render")


def _sized(value: Any) -> Any:
    if isinstance(value, _SIZED) and len(value) > MAX_VALUE:
        raise TemplateLimit(f"a value the template computes is longer than {MAX_VALUE} characters or items")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"a number the template computes is larger than {MAX_INT_BITS} bits")
    return value


def _check_width(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
            raise TemplateLimit(f"{name}(): a width or count above {MAX_WIDTH} is refused")


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _FORMAT_WIDTH.search(fmt):
        raise TemplateLimit("a format with a width or precision of 5 digits or more (or *) is refused")


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(text, str) or not isinstance(old, str) or not isinstance(new, str):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > MAX_VALUE:
        raise TemplateLimit(f"replace(): the result would be longer than {MAX_VALUE} characters")


def _budget_range(*args: int) -> range:
    """``range()`` drawing from the render's loop budget (nested loops add up)."""
    items = range(*args)
    budget = _budget()
    budget.range_left -= len(items)
    if budget.range_left < 0:
        raise TemplateLimit(f"the template's loops over range() exceed {MAX_RANGE} items in all")
    return items


def _guard_filter(name: str, func: Any) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = [a for a in args if not hasattr(a, "environment")]  # the context/environment of pass_* filters
        if name in _AMPLIFIERS:
            _check_width(name, tuple(values[1:]), kwargs)
        if name == "format" and values:
            _check_format(values[0])
        if name == "replace" and len(values) >= 3:
            _check_replace(*values[:4])
        return _sized(func(*args, **kwargs))

    for attr in ("jinja_pass_arg",):  # keep pass_context / pass_environment markers
        if hasattr(func, attr):
            setattr(guarded, attr, getattr(func, attr))
    guarded.__name__ = getattr(func, "__name__", name)
    return guarded


class _Generator(CodeGenerator):
    """``a ~ b`` (concatenation) goes through the size check too."""

    def visit_Concat(self, node: Any, frame: Any) -> None:
        self.write("environment.sized(")
        super().visit_Concat(node, frame)
        self.write(")")


LOOP_TICK = "_loop_tick"  # the global each loop body calls first


def _loop_tick() -> str:
    return ""  # the check is the sandbox's call(), which every call goes through


class SafeEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            tick = nodes.ExprStmt(nodes.Call(nodes.Name(LOOP_TICK, "load"), [], [], None, None))
            tick.set_lineno(loop.lineno)
            loop.body.insert(0, tick)
        return tree

    def sized(self, value: Any) -> Any:
        _tick()
        return _sized(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, _SIZED) and isinstance(times, int) and len(seq) * max(times, 0) > MAX_VALUE:
                    raise TemplateLimit(f"a repeated value would be longer than {MAX_VALUE}")
            ints = isinstance(left, int) and isinstance(right, int)
            if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimit(f"a number the template computes is larger than {MAX_INT_BITS} bits")
        elif operator == "**":
            ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
            if ints and right * max(left.bit_length(), 1) > MAX_INT_BITS:
                raise TemplateLimit(f"a number the template computes is larger than {MAX_INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return _sized(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)  # str.format / format_map: the format string's widths
        return wrapped

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        name = getattr(obj, "__name__", "")
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str):
            if name in _AMPLIFIERS:
                _check_width(name, args, kwargs)
            if name == "format":
                _check_format(owner)
            if name == "replace" and len(args) >= 2:
                _check_replace(owner, *args[:3])
        return _sized(super().call(context, obj, *args, **kwargs))


@lru_cache(maxsize=2)
def environment(html: bool) -> ImmutableSandboxedEnvironment:
    import jinja2.sandbox

    jinja2.sandbox.MAX_RANGE = MAX_RANGE  # process-wide: only templates use jinja2 here
    env = SafeEnvironment(undefined=StrictUndefined, autoescape=html)
    env.globals.pop("lipsum", None)  # lipsum(n=10**9): text without bound
    env.globals["range"] = _budget_range
    env.globals[LOOP_TICK] = _loop_tick
    env.filters = {name: _guard_filter(name, f) for name, f in env.filters.items()}
    return env


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


@lru_cache(maxsize=256)
def _compiled(key: tuple[str, int, str], source: str, html: bool) -> Any:
    return environment(html).from_string(source)


def run(template: Any, variables: dict[str, Any], seconds: float = RENDER_SECONDS) -> str:
    """Render a compiled template within the limits; raises jinja2's TemplateError."""
    token = _BUDGET.set(_Budget(time.monotonic() + seconds, MAX_RANGE))
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(variables):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimit(f"the rendered part is longer than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)
    except RecursionError:
        raise TemplateLimit("the template recurses too deeply") from None
    except (OverflowError, MemoryError) as exc:
        raise TemplateLimit(f"the template computes a value too large: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        # what one customer's data can make a sound template do ({{ 1 / n }} with n = 0,
        # "%d" % text): a TemplateError like the others, so that recipient fails alone
        # instead of the whole batch being retried until it is dead-lettered
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from None
    finally:
        _BUDGET.reset(token)


def render_parts(key: tuple[str, int], subject: str, html: str, text: str, variables: dict[str, Any]) -> Rendered:
    """Render the three parts; ``key`` (template id, version) names the compiled cache
    entry. Raises jinja2's TemplateError (a sandbox refusal, a missing variable, a limit)."""
    return Rendered(
        subject=run(_compiled((*key, "subject"), subject, False), variables).strip(),
        html=run(_compiled((*key, "html"), html, True), variables),
        text=run(_compiled((*key, "text"), text, False), variables),
    )


def render(template: Any, variables: dict[str, Any]) -> Rendered:
    """Render a ``crm.storage.TemplateItem`` with ``variables`` (crm/email/variables.py)."""
    key = (template.template_id, int(template.version or 0))
    return render_parts(key, template.subject, template.html, template.text, variables)
