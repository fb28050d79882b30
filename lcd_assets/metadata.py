"""Materialization metadata helpers: images in the UI, tables as markdown, the checks a run selected."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import polars as pl


def image(png: bytes, alt: str, save_to: Path | None = None) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI (markdown with a data URI), saved to disk too."""
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        tmp = save_to.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(save_to)
    b64 = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{b64})")


def table(df: pl.DataFrame, max_rows: int = 30) -> dg.MetadataValue:
    """A small polars frame as a markdown table."""
    head = df.head(max_rows)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    if df.height > max_rows:
        lines.append(f"\n… {df.height - max_rows} more rows")
    return dg.MetadataValue.md("\n".join(lines))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def selected_checks(context: dg.AssetExecutionContext, checks: list[dg.AssetCheckResult],
                    asset: dg.AssetKey) -> list[dg.AssetCheckResult]:
    """The ``checks`` of ``asset`` that this run selected (a subset run of a multi-asset may
    leave some out, and reporting an unselected check is an error)."""
    selected = {k.name for k in context.selected_asset_check_keys if k.asset_key == asset}
    return [c for c in checks if c.check_name in selected]
