"""lcd_core.ssl.trainer: a tiny ViT trains, checkpoints, resumes; the five variants run; schedules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lcd_core.ssl.config import SSLConfig, cpu_default, gpu_default, variants
from lcd_core.ssl.schedules import cosine_schedule, schedules_for
from lcd_core.ssl.source import InMemoryTileSource
from lcd_core.ssl.trainer import collapse_indicators, train
from lcd_core.embedding.vit import load_checkpoint, normalize_input

ARCH = "vit_tiny_patch16_224"


def _tiny(**kw) -> SSLConfig:
    base = dict(arch=ARCH, out_dim=32, head_hidden_dim=32, head_bottleneck_dim=16, batch_size=4,
                global_crop_size=32, local_crop_size=16, epochs=4, warmup_epochs=1,
                warmup_teacher_temp_epochs=1, freeze_last_layer=1, amp="float32")
    return cpu_default(**{**base, **kw})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are dominated by per-op overhead: on a shared CPU, 2+ intra-op threads spin and
    slow these tests by 10× or more; one thread runs them in about a second each."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def source():
    return InMemoryTileSource.random(n_conditions=2, n_replicas=2, tiles_per=2, size=32)  # 8 tiles


def test_three_steps_checkpoint_resume_and_load(source, tmp_path):
    cfg = _tiny()
    seen = []
    ck = tmp_path / "run"
    r = train(cfg, source, steps=3, checkpoint_dir=ck, checkpoint_every=2, log_every=1, progress=seen.append)
    assert (r.step, r.steps_run, r.total_steps, r.stopped_by) == (3, 3, 8, "steps")
    assert [h["step"] for h in seen] == [1, 2, 3]
    for h in seen:
        assert math.isfinite(h["loss"]) and math.isfinite(h["dino"]) and math.isfinite(h["barlow"])
        assert h["crops_per_s"] > 0 and h["eta_s"] >= 0 and 0 < h["effective_rank"] <= 8
        assert 0 <= h["teacher_entropy"] <= 1 and h["embed_std"] > 0
    assert seen[0]["lr"] == 0.0 and seen[1]["lr"] > 0  # linear warm-up from 0
    assert r.sampler_stats == {"cross_replica": 12}
    assert sorted(p.name for p in ck.iterdir()) == [
        "config.json", "model.safetensors", "training_state.json", "training_state.safetensors"]
    state = json.loads((ck / "training_state.json").read_text())
    assert state["step"] == 3 and state["opt_steps"]  # AdamW moments saved (safetensors, no pickle)

    # resume: the step counter continues, AdamW state comes back
    r2 = train(cfg, source, steps=2, checkpoint_dir=ck, log_every=1)
    assert (r2.resumed_from, r2.step, [h["step"] for h in r2.history]) == (3, 5, [4, 5])
    assert json.loads((ck / "training_state.json").read_text())["step"] == 5
    with pytest.raises(ValueError, match="out_dim"):
        train(cfg.replace(out_dim=64), source, steps=1, checkpoint_dir=ck)

    # the teacher backbone loads with lcd_core.embedding.vit and with plain timm
    from safetensors.torch import load_file

    model, conf = load_checkpoint(ck)
    assert conf["arch"] == ARCH and conf["ssl"]["out_dim"] == 32 and conf["step"] == 5
    teacher = {k[len("teacher.backbone."):]: v for k, v in load_file(str(ck / "training_state.safetensors")).items()
               if k.startswith("teacher.backbone.")}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, teacher[k])
    from lcd_core._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import timm

    plain = timm.create_model(ARCH, pretrained=True, num_classes=0, dynamic_img_size=True,
                              pretrained_cfg_overlay=dict(file=str(ck / "model.safetensors")))
    x = normalize_input(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), model(x))


def test_time_budget_stops_before_a_step(source, tmp_path):
    r = train(_tiny(), source, time_budget_s=0.0, checkpoint_dir=tmp_path / "t")
    assert (r.steps_run, r.stopped_by, r.checkpoint) == (0, "time", None)


@pytest.mark.parametrize("name", list(variants()))
def test_each_variant_runs_one_step(name, source):
    v = variants(_tiny())[name]
    r = train(v, source, steps=1, log_every=1)
    h = r.history[0]
    assert r.step == 1 and math.isfinite(h["loss"])
    assert (h["barlow"] is not None) == v.barlow
    assert set(r.sampler_stats) == ({"cross_replica"} if v.cross_batch else {"same_tile"})


def test_variants_and_presets():
    vs = variants()
    assert list(vs) == ["dino", "dino_barlow", "dino_xb", "dino_barlow_xb", "pa_dino_barlow_xb"]
    assert [v.variant for v in vs.values()] == [
        "DINO", "DINO + Barlow", "DINO + XB", "DINO + Barlow + XB", "PA + DINO + Barlow + XB"]
    g, c = gpu_default(), cpu_default()
    assert (g.out_dim, g.batch_size, g.lr, g.epochs, g.n_crops) == (65536, 256, 0.001, 60, 8)
    assert (g.barlow_lambda, g.barlow_weight, g.clip_grad, g.center_momentum) == (0.5, 0.5, 3.0, 0.9)
    assert c.out_dim < g.out_dim and c.arch == g.arch == "vit_small_patch16_224"
    assert SSLConfig.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_schedules():
    s = cosine_schedule(1.0, 0.0, 10, warmup_iters=2)
    assert len(s) == 10 and s[0] == 0.0 and s[2] == 1.0 and s[-1] > 0 and np.all(np.diff(s[2:]) < 0)
    sch = schedules_for(gpu_default(epochs=4, warmup_epochs=1, warmup_teacher_temp_epochs=2), 5)
    assert len(sch.lr) == 20 and sch.lr[5] == pytest.approx(0.001)
    assert sch.momentum[0] == pytest.approx(0.996) and sch.momentum[-1] > 0.999
    assert sch.wd[0] == pytest.approx(0.04) and sch.wd[-1] == pytest.approx(0.4, abs=0.01)
    assert sch.teacher_temp[0] == 0.04 and sch.teacher_temp[9] == pytest.approx(0.07) and sch.teacher_temp[-1] == 0.07


def test_collapse_indicators_detect_collapse():
    healthy = collapse_indicators(torch.softmax(torch.randn(16, 32) * 5, -1), torch.randn(16, 8))
    collapsed = collapse_indicators(torch.full((16, 32), 1 / 32), torch.ones(16, 8) + 1e-6 * torch.randn(16, 8))
    assert collapsed["teacher_entropy"] == pytest.approx(1.0) and healthy["teacher_entropy"] < 0.8
    assert collapsed["embed_std"] < 1e-4 < healthy["embed_std"]
    assert collapsed["effective_rank"] < 1.1 < 4 < healthy["effective_rank"]


def test_resume_with_another_model_is_refused(source, tmp_path):
    ck = tmp_path / "run"
    train(_tiny(), source, steps=1, checkpoint_dir=ck)
    with pytest.raises(ValueError, match=r"cannot resume .*out_dim"):
        train(_tiny(out_dim=16), source, steps=1, checkpoint_dir=ck)
    r = train(_tiny(out_dim=16), source, steps=1, checkpoint_dir=ck, resume=False)
    assert r.resumed_from is None and r.step == 1
