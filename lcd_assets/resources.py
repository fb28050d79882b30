"""Resources, chosen by environment (``LCD_ENV``): ``local`` (default, this machine's CPU),
``gpu`` (this machine's GPU), ``ray`` (the heavy work of each step on the Ray cluster of
``RAY_ADDRESS``, default ``auto``) or ``ray-gpu`` (the same, the embedding and pre-training on the
cluster's GPUs with the paper's pre-training recipe).

Everything lives under one folder, ``LCD_HOME`` (default ``~/.lcd``): the inbox, the metadata,
the DuckDB warehouse, Parquet datasets, model checkpoints and the Dagster instance.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import dagster as dg
import polars as pl

from lcd_assets.compute import compute_for_env
from lcd_core._parallel import local_processes
from lcd_core.cells.train import LARGE_CELL_SHARE, NUCLEUS_WEIGHT
from lcd_core.moa import MoaClasses
from lcd_core.io.platemap import Screen, ScreenConfig, load_screen
from lcd_core.tiles.preprocess import TileConfig
from lcd_core.io.warehouse import Warehouse

DEFAULT_HOME = "~/.lcd"
WAREHOUSE_POOL = "duckdb_warehouse"


def lcd_home_from_env() -> Path:
    """``$LCD_HOME`` expanded, or the documented default ``~/.lcd``."""
    return Path(os.environ.get("LCD_HOME", DEFAULT_HOME)).expanduser().resolve()


class OutsideHomeError(ValueError):
    """A run tag or config path that leads outside ``LCD_HOME`` (or the inbox)."""


class LcdHome(dg.ConfigurableResource):
    """The platform's folder: inbox, metadata, warehouse, Parquet, models, previews."""

    home: str

    @property
    def root(self) -> Path:
        return Path(self.home).expanduser()

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def metadata_dir(self) -> Path:
        return self.root / "metadata"

    @property
    def truth_dir(self) -> Path:
        return self.root / "truth"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def previews_dir(self) -> Path:
        return self.root / "previews"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.root)

    def inside(self, path: Path | str, what: str, base: Path | None = None) -> Path:
        """``path`` (a relative one taken under ``base``; symlinks kept), once it lies inside ``base``
        (default ``LCD_HOME``).

        Inside means either the resolved path under the resolved ``base`` (``..`` and symlinks
        followed), or the path itself under ``base`` with no ``..``: so ``base`` may be a symlink
        (an inbox on a share), and so may a folder in it (a linked measurement folder).

        Raises
        ------
        OutsideHomeError
            Naming ``what`` (the run tag or config key), the path and ``base``.
        """
        base = (base if base is not None else self.root).expanduser().absolute()
        p = Path(path).expanduser()
        p = p if p.is_absolute() else base / p
        plain = ".." not in p.parts and p.is_relative_to(base)
        if plain or p.resolve().is_relative_to(base.resolve()):
            return p
        raise OutsideHomeError(f"{what} = {str(path)!r} lies outside {base} (resolved: {p.resolve()}, "
                               f"{base.resolve()}): refused, nothing outside LCD_HOME is read or written")

    def model_folder(self, name: str, key: str = "embedding.checkpoint") -> Path:
        """The folder ``name`` of ``models_dir``, refused (:meth:`inside`) when it leaves ``LCD_HOME``;
        ``key``: the config key that named it, for the error."""
        return self.inside(self.models_dir / name, f"config {key}")

    def kept_tile_cache(self, plate: str, timepoint: str) -> Path:
        """Stem of the partition's kept-tile cache (:mod:`lcd_core.tiles.cache`): written by
        ``tiles``, read and removed by ``kept_tile_pass``."""
        return self.root / "cache" / "kept_tiles" / plate / timepoint

    def metadata_screen(self) -> Screen:
        """The screen validated from the files of ``metadata_dir`` (``plate_registry`` and the inbox
        sensor, which may run before it)."""
        return load_screen(self.metadata_dir)

    def screen(self) -> Screen:
        """The screen as ``plate_registry`` wrote it: the warehouse tables ``compounds``, ``layouts``
        and ``plates`` with ``screen.json``; read once while neither changes.

        Raises
        ------
        FileNotFoundError
            Naming ``plate_registry`` when its tables are missing.
        """
        config, version = self.metadata_dir / "screen.json", self.registry_version
        # the version file plate_registry rewrites with its tables; without it, every warehouse write
        # (the database file's mtime) reads the tables again
        source = version if version.exists() else self.warehouse().db_path
        stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.exists() else None for p in (source, config))
        return _registry_screen(str(self.root), stamp, version.read_text() if version.exists() else "")

    @property
    def registry_version(self) -> Path:
        """The file ``plate_registry`` rewrites (a new random token) after each write of its
        tables: the key of :meth:`screen`'s cache."""
        return self.root / "registry.version"

    def holdout_compounds(self) -> list[str]:
        """Compounds of the holdout set (``set`` column of compounds.csv; none when absent), sorted."""
        compounds = self.screen().compounds
        if "set" not in compounds.columns:
            return []
        return sorted(compounds.filter(pl.col("set") == "holdout")["compound"].to_list())

    def moa_classes(self) -> MoaClasses:
        """The screen's MoA classes, from its own compounds table (never from the generator)."""
        return MoaClasses.from_compounds(self.screen().compounds)


REGISTRY_TABLES = ("compounds", "layouts", "plates")


@functools.lru_cache(maxsize=4)
def _registry_screen(root: str, stamp: tuple, version: str) -> Screen:
    """The :class:`Screen` of the registry tables of ``root`` (``stamp`` and ``version``: the cache
    key)."""
    home = LcdHome(home=root)
    wh = home.warehouse()
    missing = sorted(set(REGISTRY_TABLES) - set(wh.tables()))
    if missing:
        raise FileNotFoundError(f"warehouse {wh.db_path} has no table {', '.join(missing)}: "
                                "materialize plate_registry first (the `setup` job)")
    path = home.metadata_dir / "screen.json"
    config = ScreenConfig.from_dict(json.loads(path.read_text(encoding="utf-8")), path)
    compounds, layouts, plates = (wh.query(f"SELECT * FROM {t}") for t in REGISTRY_TABLES)
    plates = plates.with_columns(pl.col("dosed_at").dt.convert_time_zone("UTC"))
    return Screen(config=config, compounds=compounds, layouts=layouts, registry=plates, source=home.metadata_dir)


#: folder of ``$LCD_HOME/models`` holding the cell segmentation network (asset ``segmentation_model``)
CELL_SEGMENTATION_MODEL = "cellseg-raynet"


class SegmentationSettings(dg.ConfigurableResource):
    """Training of the cell segmentation network (``lcd_core.cells.train.fit_segmentation``):
    ``n_fovs`` annotated FOVs rendered with random morphologies (about 20 labelled crops each),
    ``large_share`` of them in the large-cell regime (``random_phenotype``), ``epochs`` over them
    with the nucleus's rays weighted ``nucleus_weight`` against the cell's, the whole segmentation
    path validated on ``validation_fovs`` fresh ones. A model trained with the same settings is
    reused, not retrained.

    Per-cell log elongation r on the 100 validation FOVs: 0.61 after 3 epochs, 0.70 after 6, 0.78
    with the nucleus weighted 0.25, 0.80 with 8 epochs and the large-cell share; for multinucleated
    cells (80 further FOVs) 0.41 → 0.53 → 0.67 → 0.80. The loss still falls at 8 epochs."""

    n_fovs: int = 2000
    epochs: int = 8
    validation_fovs: int = 100
    seed: int = 0
    nucleus_weight: float = NUCLEUS_WEIGHT
    large_share: float = LARGE_CELL_SHARE

    def training(self) -> dict:
        return {"n_fovs": self.n_fovs, "epochs": self.epochs, "validation_fovs": self.validation_fovs,
                "seed": self.seed, "nucleus_weight": self.nucleus_weight, "large_share": self.large_share}


class TilingSettings(dg.ConfigurableResource):
    """Tiling of FOVs; ``binning=0`` bins large exports to about 1080 px (2160² → 2×)."""

    tile_size: int = 224
    binning: int = 0
    flatfield: bool = True

    def config_for(self, image_size: int) -> TileConfig:
        binning = self.binning or max(1, round(image_size / 1080))
        return TileConfig(tile_size=self.tile_size, binning=binning, flatfield=self.flatfield)


class EmbeddingSettings(dg.ConfigurableResource):
    """Which checkpoint embeds the tiles, and how.

    ``checkpoint`` names a folder of ``$LCD_HOME/models``; the default is the untrained ViT-S/16
    that the ``model_checkpoint`` asset writes until pre-training exists. ``batch_size``: tiles
    per forward; 16 lets the decode and features of the next batch overlap the ViT within a 64-FOV
    measurement, and runs the one-core ViT at 0.81 of the bf16 GEMM rate (32: 0.78, 64: about
    0.76; ``benchmarks/bench_demo.py``); embeddings do not depend on it.
    """

    checkpoint: str = "untrained-vit-s16-seed0"
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "auto"


class NucleiSettings(dg.ConfigurableResource):
    """How ``fov_nuclei`` finds nuclei: ``method`` is a name of
    :data:`lcd_core.nuclei.measurement.METHODS` (``brightfield``: training-free, the default;
    ``patches``: objects in the ViT's patch features)."""

    method: str = "brightfield"


class PretrainingSettings(dg.ConfigurableResource):
    """How the ``ssl_checkpoint`` partitions train (one per ablation variant).

    ``preset``: ``cpu`` (the bounded CPU recipe of :func:`lcd_core.ssl.config.cpu_default`, see
    :data:`CPU_PRETRAINING`) or ``gpu`` (the paper-scale recipe). ``steps``: optimizer steps of the
    run (0: the preset's); the schedules are laid over exactly these steps. ``time_budget_s``
    stops a call early (0: none); a later materialization resumes where it stopped. ``n_draws``:
    null draws of the ablation's screen-activity measure (the chain's 1,000 by default; tests use
    fewer).
    """

    preset: str = "cpu"
    steps: int = 0
    time_budget_s: float = 0.0
    num_threads: int = 0
    device: str = "auto"
    seed: int = 0
    n_draws: int = 1000


MOLCLIP_MODEL = "molclip"


class MolClipSettings(dg.ConfigurableResource):
    """How the MolCLIP assets train and evaluate (SPEC §4.12).

    ``features``: the well profiles that make the videos, ``model`` (the ViT's normalized profiles,
    default) or ``handcrafted`` (the handcrafted baseline's). ``epochs``: training epochs of every
    model. ``n_folds`` / ``seeds``: the compound-grouped folds of the with / without comparison,
    re-drawn per seed (each fold × seed trains both arms: 30 models of a few seconds for the
    default 5 folds × 3 seeds, 99 s in the seed-1 demo; the intervals are a bootstrap over query
    compounds, their queries from every seed kept together). ``threads``: torch threads; one by
    default: the models are small, and with two threads on a saturated machine the evaluation of
    the seed-0 demo took 23 min (one thread, on a similarly loaded machine: 222 s). ``workers``:
    processes that train the evaluation's models side by side, one per core by default (0), each
    with ``threads`` (the figures do not depend on it).
    """

    features: str = "model"
    epochs: int = 30
    n_folds: int = 5
    seeds: list[int] = [0, 1, 2]
    threads: int = 1
    workers: int = 0

    def n_workers(self) -> int:
        return self.workers or local_processes()

    def config(self):
        from lcd_core.molclip import MolClipConfig

        return MolClipConfig(epochs=self.epochs, threads=self.threads)


ENVS = ("local", "gpu", "ray", "ray-gpu")


def resources_for_env(env: str | None = None, home: Path | None = None) -> dict:
    """Resource set of an environment (:data:`ENVS`): ``local`` (CPU, bf16 where supported),
    ``gpu``, ``ray`` or ``ray-gpu`` (see the module's docstring)."""
    env = env or os.environ.get("LCD_ENV", "local")
    home = home or lcd_home_from_env()
    if env not in ENVS:
        raise ValueError(f"LCD_ENV={env!r}: expected one of {', '.join(ENVS)}")
    gpu = env in {"gpu", "ray-gpu"}
    embedding = (
        EmbeddingSettings(batch_size=512, device="cuda" if env == "gpu" else "auto")
        if gpu
        else EmbeddingSettings()
    )
    return {
        "lcd": LcdHome(home=str(home)),
        "compute": compute_for_env(env),
        "tiling": TilingSettings(),
        "embedding": embedding,
        "nuclei": NucleiSettings(),
        "pretraining": PretrainingSettings(preset="gpu" if gpu else "cpu"),
        "segmentation": SegmentationSettings(),
        "molclip": MolClipSettings(),
    }
