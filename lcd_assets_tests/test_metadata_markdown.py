"""Strings from metadata in UI markdown (issue 22): every markdown helper of
``lcd_assets.metadata`` escapes them, so a compound named ``x|y``, ``**bold**``, an HTML tag or a
line break is shown as written and never breaks a table or injects HTML. Checked by rendering
with a real CommonMark parser (markdown-it, raw HTML enabled, GFM tables)."""

from __future__ import annotations

import html as html_lib
import re

import polars as pl
import pytest
from markdown_it import MarkdownIt

from lcd_assets import metadata as md

NASTY = [
    "x|y",
    "**bold**",
    "<img src=x onerror=alert(1)>",
    "two\nlines",
    "back\\slash|\\|",
    "[link](javascript:alert(1))",
    "_a_ `code` ~~gone~~ # not a heading",
    "&lt;b&gt; & <script>alert(1)</script>",
    "tab\there\r\nCRLF",
]


def _shown(text: str) -> str:
    """What the UI must show: the text, its line breaks (with the blanks around them) one space."""
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


def _render(markdown: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(markdown)


def _cells(html: str) -> list[str]:
    """The text of every ``<td>`` of a rendered table (entities decoded)."""
    return [html_lib.unescape(c) for c in re.findall(r"<td>(.*?)</td>", html, flags=re.S)]


@pytest.mark.parametrize("text", NASTY)
def test_escape_renders_as_the_literal_text(text):
    html = _render(md.escape(text))
    assert "<img" not in html and "<script" not in html and "<strong>" not in html and "<a " not in html
    assert "<em>" not in html and "<code>" not in html and "<s>" not in html and "<h1>" not in html
    assert html_lib.unescape(re.sub(r"</?p>", "", html)).strip() == _shown(text)


def test_a_table_of_metadata_strings_keeps_its_shape():
    df = pl.DataFrame({"compound": NASTY, "moa": ["a|b"] * len(NASTY), "plate|name": ["<b>P1</b>"] * len(NASTY),
                       "n": list(range(len(NASTY)))})
    html = _render(md.table(df).value)
    assert html.count("<table>") == 1 and html.count("<tr>") == len(NASTY) + 1  # header + one row each
    assert html.count("<td>") == 4 * len(NASTY) and html.count("<th>") == 4
    assert "<img" not in html and "<script" not in html and "<strong>" not in html and "<b>" not in html
    cells = _cells(html)
    assert cells[0::4] == [_shown(t) for t in NASTY]
    assert set(cells[1::4]) == {"a|b"} and set(cells[2::4]) == {"<b>P1</b>"}
    assert "plate|name" in html.replace("&lt;", "<")


def test_image_alt_text_is_escaped():
    value = md.image(b"\x89PNG", "well A01] (x) <img src=x onerror=alert(1)>\n**b**").value
    html = _render(value)
    assert html.count("<img") == 1 and "onerror" not in html.split('alt="')[0]
    assert 'src="data:image/png;base64,' in html
