"""Self-supervised pre-training of the ViT backbone: DINO, + Barlow Twins, + cross-batch (XB)
sampling with per-replica teacher centers, + plane-agnostic (PA) augmentation (SPEC 4.2, 7).

One module per concern: :mod:`.config` (``SSLConfig``, the five paper variants, CPU/GPU presets),
:mod:`.head` (``DINOHead``, ``MultiCropWrapper``), :mod:`.losses` (``DINOLoss`` with per-replica
centers, ``BarlowTwinsLoss``, ``total_loss``), :mod:`.augment` (multi-crop, PA), :mod:`.sampler`
(cross-batch pairs), :mod:`.schedules`, :mod:`.source` (tile source protocol), :mod:`.checkpoint`
(safetensors + JSON, resumable) and :mod:`.trainer` (``train``). Importing this package does not
import timm; :func:`lcd_core.ssl.trainer.train` does, on first use.
"""

from lcd_core.ssl.config import SSLConfig, cpu_default, gpu_default, variants

__all__ = ["SSLConfig", "cpu_default", "gpu_default", "variants"]
