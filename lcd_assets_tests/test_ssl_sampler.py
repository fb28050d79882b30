"""lcd_core.ssl.sampler (cross-batch pairs, fallbacks) and lcd_core.ssl.augment (multi-crop, PA)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from lcd_core.ssl.augment import MultiCropAugment
from lcd_core.ssl.config import SSLConfig
from lcd_core.ssl.sampler import CrossBatchSampler


def _table() -> pl.DataFrame:
    rows = []

    def add(compound, dose, replica, plate, n):
        for k in range(n):
            rows.append({"tile_id": f"{plate}/{compound}/{dose}/{k}", "compound": compound, "dose": dose,
                         "timepoint": "04h", "replica": replica, "plate": plate})

    for r in ("R01", "R02", "R03"):  # A at 10 µM: three replicas → always cross-replica
        add("A", "10uM", r, f"{r}-L01", 2)
    add("A", "1uM", "R01", "R01-L01", 1)  # A at 1 µM: one replica, two plates → plate fallback
    add("A", "1uM", "R01", "R01-L02", 1)
    add("B", "10uM", "R02", "R02-L01", 2)  # one replica, one plate → another tile
    add("C", "10uM", "R03", "R03-L01", 1)  # a single tile → itself
    return pl.DataFrame(rows)


def test_pairs_cross_replicas_within_condition_and_fallbacks_are_counted():
    t = _table()
    s = CrossBatchSampler(t, cross_batch=True, seed=0)
    assert s.levels() == {"cross_replica": 6, "fallback_plate": 2, "fallback_tile": 2, "fallback_self": 1}
    rows = t.to_dicts()
    n_steps = 4 * s.steps_per_epoch(4)
    for step in range(n_steps):
        b = s.batch(step, 4)
        for a, p, kind in zip(b.anchor, b.partner, b.kind):
            ra, rp = rows[a], rows[p]
            assert (ra["compound"], ra["dose"], ra["timepoint"]) == (rp["compound"], rp["dose"], rp["timepoint"])
            if kind == "cross_replica":
                assert ra["replica"] != rp["replica"]
            elif kind == "fallback_plate":
                assert ra["replica"] == rp["replica"] and ra["plate"] != rp["plate"]
            elif kind == "fallback_tile":
                assert ra["plate"] == rp["plate"] and a != p
            else:
                assert kind == "fallback_self" and a == p
    assert sum(s.stats.values()) == n_steps * 4
    assert s.stats["cross_replica"] > 0 and s.stats["fallback_plate"] > 0
    # anchors of one epoch are a permutation (drop-last): no repeats inside an epoch
    ep = np.concatenate([s.batch(k, 4).anchor for k in range(s.steps_per_epoch(4))])
    assert len(set(ep.tolist())) == len(ep)


def test_sampler_is_a_function_of_seed_and_step_and_without_xb_pairs_a_tile_with_itself():
    t = _table()
    a, b = CrossBatchSampler(t, seed=3), CrossBatchSampler(t, seed=3)
    for step in (0, 5, 2):
        x, y = a.batch(step, 4), b.batch(step, 4)
        assert np.array_equal(x.anchor, y.anchor) and np.array_equal(x.partner, y.partner)
    plain = CrossBatchSampler(t.select("tile_id"), cross_batch=False)
    pb = plain.batch(0, 4)
    assert np.array_equal(pb.anchor, pb.partner) and set(pb.kind) == {"same_tile"}
    with pytest.raises(ValueError, match="replica"):
        CrossBatchSampler(t.drop("replica"), cross_batch=True)


def _aug_config(**kw) -> SSLConfig:
    # crops as large as the tile at scale 1 → the crop box is the whole tile, resize is identity
    base = dict(global_crop_size=32, local_crop_size=32, global_crop_scale=(1.0, 1.0),
                local_crop_scale=(1.0, 1.0), hflip_p=0.0, vflip_p=0.0, jitter_p=0.0,
                blur_p=(1.0, 1.0, 1.0), blur_sigma=(1.0, 2.0), n_local_crops_per_source=3)
    return SSLConfig(**{**base, **kw})


def _tile(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 32, 32, generator=g) * torch.tensor([0.3, 0.6, 1.0])[:, None, None]


def test_plane_agnostic_crop_is_one_plane_replicated_without_blur():
    aug = MultiCropAugment(_aug_config(plane_agnostic=True))
    a, b = _tile(0), _tile(1)
    g = torch.Generator().manual_seed(0)
    picked = []
    for _ in range(10):
        crops = aug(a, b, g)
        assert len(crops) == 8 and all(c.shape == (3, 32, 32) for c in crops)
        for i, c in enumerate(crops):
            src = a if i in (0, 2, 3, 4) else b  # g1, g2, 3 locals of a, 3 locals of b
            assert torch.equal(c[0], c[1]) and torch.equal(c[1], c[2])
            match = [k for k in range(3) if torch.allclose(c[0], src[k], atol=1e-6)]
            assert len(match) == 1  # exactly one source plane, unblurred (blur_p is 1)
            picked.append(match[0])
    counts = np.bincount(picked, minlength=3)
    assert counts.min() > 10  # 80 crops, each plane picked (uniform: ≈ 27 each)


def test_standard_augmentation_keeps_planes_and_blurs():
    aug = MultiCropAugment(_aug_config(plane_agnostic=False))
    a = _tile(0)
    crops = aug(a, None, torch.Generator().manual_seed(0))
    for c in crops:
        assert not torch.equal(c[0], c[1])  # planes stay distinct channels
        assert not torch.allclose(c, a, atol=1e-3)  # blurred (p = 1)
        hf = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
        assert hf(c) < hf(a)
    sizes = MultiCropAugment(SSLConfig(global_crop_size=64, local_crop_size=32))(
        torch.rand(3, 80, 80), torch.rand(3, 80, 80), torch.Generator().manual_seed(1))
    assert [c.shape[-1] for c in sizes] == [64, 64] + [32] * 6
    assert all(0.0 <= float(c.min()) and float(c.max()) <= 1.0 for c in sizes)


def test_negative_controls_pair_across_replicas_whatever_the_plate_dose():
    """Each replica carries one dose (the demo design): treatments of one dose have one replica,
    but DMSO is one condition per timepoint, so its pairs cross replicas."""
    rows = []
    for r, dose in (("R01", "1uM"), ("R02", "10uM")):
        for k in range(3):
            rows.append({"compound": "DMSO", "dose": dose, "timepoint": "04h", "replica": r,
                         "plate": f"{r}-L01", "role": "negative_control"})
            rows.append({"compound": "A", "dose": dose, "timepoint": "04h", "replica": r,
                         "plate": f"{r}-L01", "role": "treatment"})
    t = pl.DataFrame(rows)
    s = CrossBatchSampler(t, cross_batch=True, seed=0)
    assert s.levels() == {"cross_replica": 6, "fallback_tile": 6}
    b = s.batch(0, t.height)
    for a, p, kind in zip(b.anchor, b.partner, b.kind):
        ra, rp = t.row(int(a), named=True), t.row(int(p), named=True)
        assert ra["compound"] == rp["compound"] and ra["timepoint"] == rp["timepoint"]
        if ra["role"] == "negative_control":
            assert kind == "cross_replica" and ra["replica"] != rp["replica"]
        else:
            assert ra["dose"] == rp["dose"] and kind == "fallback_tile"
    # without a role column every condition keeps its dose
    assert CrossBatchSampler(t.drop("role"), cross_batch=True).levels() == {"fallback_tile": 12}
