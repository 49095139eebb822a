"""The plain-text part of an email, derived from its HTML (stdlib ``html.parser``: no
lxml, which would not fit the 12 MB package).

What it keeps: paragraphs and headings as blocks separated by a blank line, ``<br>`` as
a line break, links as ``text (url)`` (just ``url`` when the text is the URL), list items
as ``- item`` (``1. item`` in an ``<ol>``), table rows as lines with cells separated by
a space, ``<hr>`` as a line of dashes. What it drops: ``<head>``, ``<style>``,
``<script>`` and comments. Whitespace is collapsed as a browser would.

jinja2 tags in the HTML pass through as text, so the derived text is itself a template
that renders with the same variables (``<a href="{{ unsubscribe_url }}">Unsubscribe</a>``
becomes ``Unsubscribe ({{ unsubscribe_url }})``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote",
    "section", "article", "header", "footer", "pre", "address", "center", "main", "nav",
}  # fmt: skip
_LINES = {"tr", "li", "dt", "dd"}
_SKIP = {"head", "style", "script", "title", "template"}
_VOID_SKIP = {"meta", "link"}
_SPACE = re.compile(r"[ \t\r\n\f]+")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.links: list[tuple[str | None, int]] = []  # (href, where its text starts in out)
        self.lists: list[list[int]] = []  # per open list: [ordered (0/1), counter]
        self.pre = 0

    # -- output helpers: "\n" entries are line breaks, "\n\n" block breaks -----------------
    def _text(self, data: str) -> None:
        self.out.append(data)

    def _break(self, blank: bool) -> None:
        self.out.append("\n\n" if blank else "\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip or tag in _VOID_SKIP:
            return
        if tag == "br":
            self._text("\x00BR")
        elif tag == "hr":
            self._break(True)
            self._text("\x00HR")
            self._break(True)
        elif tag in _BLOCKS:
            self._break(True)
            if tag in ("ul", "ol"):
                self.lists.append([1 if tag == "ol" else 0, 0])
            if tag == "pre":
                self.pre += 1
        elif tag in _LINES:
            self._break(False)
            if tag == "li":
                if self.lists and self.lists[-1][0]:
                    self.lists[-1][1] += 1
                    self._text(f"\x00LI{self.lists[-1][1]}. ")
                else:
                    self._text("\x00LI- ")
        elif tag in ("td", "th"):
            self._text(" ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.out)))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._text(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag in _BLOCKS:
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._break(True)
        elif tag in _LINES:
            self._break(False)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = _SPACE.sub(" ", "".join(p for p in self.out[start:] if not p.startswith("\n"))).strip()
            href = (href or "").strip()
            if href and not href.startswith(("#", "javascript:")):
                if href.removeprefix("mailto:") == label or href == label:
                    del self.out[start:]
                    self._text(href.removeprefix("mailto:") if href.startswith("mailto:") else href)
                elif label:
                    self._text(f" ({href})")
                else:
                    self._text(href)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self._text(data.replace("\n", "\x00BR"))
        else:
            self._text(data)

    def result(self) -> str:
        lines: list[str] = []
        current: list[str] = []

        def flush() -> None:
            nonlocal current
            line = _SPACE.sub(" ", "".join(current)).strip()
            current = []
            if not line:
                return
            line = line.replace("\x00BR ", "\x00BR").replace(" \x00BR", "\x00BR")
            for piece in line.split("\x00BR"):
                piece = piece.replace("\x00HR", "-" * 40).replace("\x00LI", "").strip()
                lines.append(piece)

        for part in self.out:
            if part in ("\n", "\n\n"):
                flush()
                if part == "\n\n":
                    lines.append("")
                continue
            current.append(part)
        flush()
        text = "\n".join(lines)
        text = re.sub(r"\n{3,}", "\n\n", text)
        return "\n".join(line.rstrip() for line in text.strip().split("\n")) + "\n"


def from_html(html: str) -> str:
    """The plain-text version of ``html`` (see the module's docstring)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return parser.result()
