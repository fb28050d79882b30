"""Summaries of a Harmony measurement, for the ``lcd inspect PATH [--json]`` command.

Pure library: never imports dagster.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from lcd_core.io.phenix import Measurement, PhenixError

#: How many missing files :func:`format_text` lists before summarising the rest.
MAX_LISTED = 10


def _channel_summaries(measurement: Measurement) -> list[dict[str, Any]]:
    """Per channel: id, name, type and the image/pixel size its images have."""
    stats = (
        measurement.images.group_by("channel")
        .agg(
            pl.col("size_x").first(),
            pl.col("size_y").first(),
            pl.col("resolution_x_m").first(),
            pl.len().alias("n_images"),
        )
        .sort("channel")
    )
    by_id = {r["channel"]: r for r in stats.iter_rows(named=True)}
    out: list[dict[str, Any]] = []
    for cid, ch in sorted(measurement.channels.items()):
        s = by_id.get(cid)
        out.append(
            {
                "id": cid,
                "name": ch.name,
                "type": ch.type,
                "n_images": int(s["n_images"]) if s else 0,
                "image_size": [int(s["size_x"]), int(s["size_y"])] if s else None,
                "pixel_size_um": float(s["resolution_x_m"]) * 1e6 if s else None,
            }
        )
    return out


def describe(measurement: Measurement) -> dict[str, Any]:
    """JSON-serialisable summary of a measurement.

    Parameters
    ----------
    measurement
        From :func:`lcd_core.io.phenix.read_index`.

    Returns
    -------
    dict
        Keys: ``index_path``, ``plate_id``, ``measurement_id``, ``harmony_version``,
        ``plate_type``, ``plate_rows``, ``plate_columns``, ``start_time`` (ISO 8601 or
        None), ``wells``, ``n_wells``, ``fields``, ``planes``, ``timepoints``,
        ``channels`` (id, name, type, n_images, image_size, pixel_size_um),
        ``image_size`` ([x, y] of the brightfield channel, else of the first
        channel), ``pixel_size_um``, ``n_images``, ``n_missing``, ``missing_files``,
        ``brightfield_channel`` (id or None) and ``brightfield_channels``.
    """
    channels = _channel_summaries(measurement)
    try:
        brightfield: int | None = measurement.brightfield_channel()
    except PhenixError:
        brightfield = None
    main = next((c for c in channels if c["id"] == brightfield), None)
    if main is None:
        main = next((c for c in channels if c["image_size"] is not None), None)
    missing = [str(p) for p in measurement.missing_files()]
    return {
        "index_path": str(measurement.index_path),
        "plate_id": measurement.plate_id,
        "measurement_id": measurement.measurement_id,
        "harmony_version": measurement.harmony_version,
        "plate_type": measurement.plate_type,
        "plate_rows": measurement.plate_rows,
        "plate_columns": measurement.plate_columns,
        "start_time": measurement.start_time.isoformat() if measurement.start_time else None,
        "wells": measurement.wells,
        "n_wells": len(measurement.wells),
        "fields": measurement.fields,
        "planes": measurement.planes,
        "timepoints": measurement.timepoints,
        "channels": channels,
        "image_size": main["image_size"] if main else None,
        "pixel_size_um": main["pixel_size_um"] if main else None,
        "n_images": measurement.images.height,
        "n_missing": len(missing),
        "missing_files": missing,
        "brightfield_channel": brightfield,
        "brightfield_channels": measurement.brightfield_channels(),
    }


def _ints(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"


def _wells(wells: list[str], limit: int = 24) -> str:
    if len(wells) <= limit:
        return " ".join(wells) or "none"
    return f"{' '.join(wells[:limit])} ... ({len(wells) - limit} more)"


def format_text(d: dict[str, Any]) -> str:
    """Readable multi-line summary of :func:`describe`'s dict."""
    size = d.get("image_size")
    px = d.get("pixel_size_um")
    bf = d.get("brightfield_channel")
    lines = [
        f"index        {d['index_path']}",
        f"plate        {d['plate_id']}  ({d['plate_type']}, {d['plate_rows']} x {d['plate_columns']})",
        f"measurement  {d['measurement_id']}  started {d['start_time'] or 'unknown'}",
        f"harmony      version {d['harmony_version']}",
        f"wells        {d['n_wells']}: {_wells(d['wells'])}",
        f"fields       {_ints(d['fields'])}",
        f"planes       {_ints(d['planes'])}",
        f"timepoints   {_ints(d['timepoints'])}",
        "image size   "
        + (f"{size[0]} x {size[1]} px" if size else "unknown")
        + (f", {px:.4f} µm/px" if px is not None else ""),
        f"images       {d['n_images']} listed, {d['n_missing']} missing on disk",
        "brightfield  " + (f"channel {bf}" if bf is not None else "NONE (no channel of type Brightfield)"),
        "channels",
    ]
    for c in d["channels"]:
        mark = "*" if c["id"] == bf else " "
        lines.append(f"  {mark} {c['id']:>2}  {c['type']:<14} {c['name']}  ({c['n_images']} images)")
    missing = d.get("missing_files") or []
    if missing:
        lines.append("missing files")
        lines += [f"    {p}" for p in missing[:MAX_LISTED]]
        if len(missing) > MAX_LISTED:
            lines.append(f"    ... and {len(missing) - MAX_LISTED} more")
    return "\n".join(lines)
