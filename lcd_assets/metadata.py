"""Materialization metadata helpers: images in the UI, tables as markdown, the checks a run selected."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dagster as dg
import polars as pl


#: characters with a meaning inside a markdown line (emphasis, code, links, tables, strikethrough)
_MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+!|~$])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def escape(text: object) -> str:
    """``text`` as literal markdown inline text: HTML ``& < > "`` as entities, markdown
    punctuation and backslashes backslash-escaped, line breaks (and runs of whitespace around
    them) as one space. Every string from metadata (compound, MoA, barcode, well, plate names)
    goes through here before it reaches UI markdown: ``x|y`` stays in its table cell,
    ``**bold**`` stays literal, ``<img …>`` is text, not HTML."""
    s = "".join(_HTML.get(c, c) for c in str(text))
    s = _MD_PUNCTUATION.sub(r"\\\1", s)
    return re.sub(r"\s*[\r\n\u2028\u2029]+\s*", " ", s)


def image(png: bytes, alt: str, save_to: Path | None = None) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI (markdown with a data URI, ``alt`` escaped), saved to disk too."""
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        tmp = save_to.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(save_to)
    b64 = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{escape(alt)}](data:image/png;base64,{b64})")


def table(df: pl.DataFrame, max_rows: int = 30) -> dg.MetadataValue:
    """A small polars frame as a markdown table (headers and cells :func:`escape`-d)."""
    head = df.head(max_rows)
    cols = head.columns
    lines = ["| " + " | ".join(escape(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    if df.height > max_rows:
        lines.append(f"\n… {df.height - max_rows} more rows")
    return dg.MetadataValue.md("\n".join(lines))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return escape(v)


def selected_checks(context: dg.AssetExecutionContext, checks: list[dg.AssetCheckResult],
                    asset: dg.AssetKey) -> list[dg.AssetCheckResult]:
    """The ``checks`` of ``asset`` that this run selected (a subset run of a multi-asset may
    leave some out, and reporting an unselected check is an error)."""
    selected = {k.name for k in context.selected_asset_check_keys if k.asset_key == asset}
    return [c for c in checks if c.check_name in selected]
