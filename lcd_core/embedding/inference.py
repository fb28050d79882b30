"""Batch inference of the ViT backbone on tiles (aggregation: :mod:`lcd_core.embedding.aggregate`).

Input: tiles ``(n, 3, T, T)`` float (float16 or float32) in [0, 1] per plane (from
:func:`lcd_core.tiles.grid.tile_fov`), either one array (a NumPy ``memmap`` works: it is read batch by
batch) or any iterable of such arrays of any sizes (e.g. one per FOV). They are re-batched to
``batch_size``, normalised with ``(x − 0.5) / 0.25`` (:data:`lcd_core.embedding.vit.INPUT_MEAN` /
``INPUT_STD``) and fed to the model under ``torch.inference_mode()``. Output: the model's forward
(the CLS token for ``num_classes=0`` timm ViTs), as float32 ``(N, D)``.

Performance notes (2-core AVX512-BF16 CPU, ViT-S/16 at 224 px; see ``benchmarks/bench_embed.py``;
medians of repeated runs on an otherwise idle machine):

* ``dtype="auto"`` picks bf16 where the hardware has native bf16 dot products (x86
  ``avx512_bf16`` / ``amx_bf16`` CPU flags, or a CUDA device with bf16) and float32 elsewhere
  (bf16 emulation on older CPUs is slower than fp32). bf16 is ≈3.5× fp32 here.
* On CPU, bf16 runs on a cached *pure-bf16 copy* of the model with timm's *unfused* attention
  (``q @ kᵀ → softmax → @ v``): ≈34 tiles/s at batch 32 vs ≈28 for bf16 autocast on the fp32
  model with the fused (flash) SDPA kernel, which is slow on CPU for 197 tokens. Agreement with
  fp32: cosine > 0.9999, relative error ≈1 %. The caller's model is never modified.
* Batches of 16–32 beat 64+ on CPU (activations fall out of cache): default 32 on CPU, 256 on CUDA.
* ``torch.compile`` (``compile=True``) gained ~5–10 % after a ~30 s compile in a quick test: off by
  default. channels_last is irrelevant for a ViT (one stride-16 conv). ipex is not available.
* A background thread prepares the next batches (bounded queue of ``prefetch`` batches), so input
  reading / tiling in the source iterator overlaps with compute and memory is bounded by a few
  batches, not by the partition.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from lcd_core.embedding.vit import INPUT_MEAN, INPUT_STD

__all__ = [
    "input_size_of",
    "resize_tiles",
    "cpu_has_native_bf16",
    "resolve_device",
    "resolve_dtype",
    "embed_batches",
    "embed_tiles",
]

ProgressFn = Callable[[int, "int | None", float], None]

DEFAULT_BATCH_CPU = 32  # ViT-S/16 bf16 on CPU: 16–32 beat 64+ (cache); see module docstring
DEFAULT_BATCH_CUDA = 256


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has native bf16 dot products (x86 ``avx512_bf16`` or ``amx_bf16``).

    Overridable with ``LCD_CPU_BF16=0/1``. Non-Linux / non-x86: False (fp32 is the safe default)."""
    env = os.environ.get("LCD_CPU_BF16")
    if env is not None:
        return env.strip().lower() in ("1", "true", "yes")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or ``None`` for plain float32.

    ``"auto"``: bf16 on CUDA with bf16 support or on a CPU with native bf16, else float32.
    ``"bfloat16"`` / ``"float16"`` / ``"float32"`` force the choice (float16 only on CUDA)."""
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype in (None, "float32", "fp32"):
        return None
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return None
    if dtype in ("bfloat16", "bf16"):
        return torch.bfloat16
    if dtype in ("float16", "fp16", "half"):
        if device.type == "cpu":
            raise ValueError("float16 autocast is not supported for CPU inference; use bfloat16 or float32")
        return torch.float16
    raise ValueError(f"unknown dtype {dtype!r} (auto | bfloat16 | float16 | float32)")


# --------------------------------------------------------------------------------------------
# input batching (runs in the producer thread)


def _chunks(tiles: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Yield the source as arrays of any size, lazily (a memmap is read chunk by chunk)."""
    if isinstance(tiles, torch.Tensor):
        tiles = tiles.detach().cpu().numpy()
    if isinstance(tiles, np.ndarray):
        if tiles.ndim != 4:
            raise ValueError(f"tiles must be (n, 3, T, T), got shape {tiles.shape}")
        for i in range(0, len(tiles), batch_size):
            yield tiles[i : i + batch_size]
        return
    for chunk in tiles:
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.detach().cpu().numpy()
        chunk = np.asarray(chunk)
        if chunk.ndim == 3:
            chunk = chunk[None]
        if chunk.ndim != 4:
            raise ValueError(f"each chunk of tiles must be (n, 3, T, T), got shape {chunk.shape}")
        if len(chunk):
            yield chunk


def _rebatch(chunks: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Exactly ``batch_size`` tiles per batch (the last may be smaller), float32, normalised."""
    buf: list[np.ndarray] = []
    n = 0
    for chunk in chunks:
        while len(chunk):
            take = min(batch_size - n, len(chunk))
            buf.append(chunk[:take])
            n += take
            chunk = chunk[take:]
            if n == batch_size:
                yield _normalise(buf)
                buf, n = [], 0
    if n:
        yield _normalise(buf)


def _normalise(parts: list[np.ndarray]) -> np.ndarray:
    n = sum(len(p) for p in parts)
    out = np.empty((n, *parts[0].shape[1:]), dtype=np.float32)
    i = 0
    for p in parts:
        if p.shape[1:] != out.shape[1:]:
            raise ValueError(f"tiles of different shapes in one batch: {p.shape[1:]} vs {out.shape[1:]}")
        out[i : i + len(p)] = p
        i += len(p)
    out -= INPUT_MEAN
    out *= 1.0 / INPUT_STD
    return out


_DONE = object()


class _Error:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _prefetch(source: Iterator[np.ndarray], depth: int) -> Iterator[np.ndarray]:
    """Run ``source`` in a daemon thread, at most ``depth`` items ahead."""
    if depth <= 0:
        yield from source
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            put(_Error(e))

    t = threading.Thread(target=work, name="lcd-embed-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Error):
                raise item.exc
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def _count(tiles: Any) -> int | None:
    if isinstance(tiles, (np.ndarray, torch.Tensor)):
        return int(tiles.shape[0])
    if isinstance(tiles, (list, tuple)):
        return int(sum(np.shape(t)[0] if np.ndim(t) == 4 else 1 for t in tiles))
    return None


# --------------------------------------------------------------------------------------------
# inference

_BF16_COPIES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, torch.nn.Module]]" = weakref.WeakKeyDictionary()
_COPY_LOCK = threading.Lock()


def _weights_signature(model: torch.nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def _bf16_inference_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A cached bf16 copy of ``model`` for CPU inference, with unfused attention.

    Pure bf16 weights avoid autocast re-casting every weight on every batch, and timm's explicit
    ``q @ kᵀ → softmax → @ v`` attention runs faster in bf16 on CPU than the fused (flash) kernel
    for 197 tokens. The caller's model is never modified; the copy is rebuilt when its weights
    change (storage or in-place version)."""
    sig = _weights_signature(model)
    with _COPY_LOCK:
        hit = _BF16_COPIES.get(model)
        if hit is not None and hit[0] == sig:
            return hit[1]
        m = copy.deepcopy(model).to(torch.bfloat16).eval()
        for mod in m.modules():
            if hasattr(mod, "fused_attn"):
                mod.fused_attn = False
        _BF16_COPIES[model] = (sig, m)
        return m


def _inference_model(model: torch.nn.Module, dev: torch.device, amp: torch.dtype | None,
                     bf16_weights: bool | None):
    """``(model, input dtype, autocast dtype)`` to run: on CPU with bf16 (unless
    ``bf16_weights`` is False) the cached pure-bf16 copy fed bf16 inputs, without autocast."""
    model = model.to(dev).eval()
    if amp is torch.bfloat16 and dev.type == "cpu" and (bf16_weights is None or bf16_weights):
        return _bf16_inference_copy(model), torch.bfloat16, None
    return model, None, amp


@contextlib.contextmanager
def _intra_op_threads(num_threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``num_threads`` (if given) for the block, then restored."""
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        if num_threads:
            torch.set_num_threads(old_threads)


def _forward(fwd: Callable, batch: np.ndarray, dev: torch.device, cast_input: torch.dtype | None,
             amp: torch.dtype | None, pad_to: int) -> np.ndarray:
    """One batch through the model: float32 ``(len(batch), D)``. A batch shorter than ``pad_to``
    is zero-padded first (one shape for ``torch.compile``)."""
    n = len(batch)
    if n < pad_to:
        batch = np.concatenate([batch, np.zeros((pad_to - n, *batch.shape[1:]), batch.dtype)])
    x = torch.from_numpy(batch)
    if cast_input is not None:
        x = x.to(cast_input)
    if dev.type != "cpu":
        x = x.pin_memory().to(dev, non_blocking=True)
    with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
        y = fwd(x)
    if isinstance(y, (tuple, list)):
        y = y[0]
    return y[:n].float().cpu().numpy()


def embed_batches(
    model: torch.nn.Module,
    tiles: np.ndarray | torch.Tensor | Iterable[np.ndarray],
    *,
    batch_size: int | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device = "auto",
    total: int | None = None,
    progress: ProgressFn | None = None,
    prefetch: int = 2,
    num_threads: int | None = None,
    compile: bool = False,
    bf16_weights: bool | None = None,
) -> Iterator[np.ndarray]:
    """Stream embeddings: yields one float32 ``(b, D)`` array per batch, in input order.

    ``tiles``: ``(N, 3, T, T)`` array/tensor or an iterable of ``(n_i, 3, T, T)`` arrays (re-batched
    to ``batch_size``; default :data:`DEFAULT_BATCH_CPU` on CPU, :data:`DEFAULT_BATCH_CUDA` on
    CUDA). ``dtype``: see :func:`resolve_dtype`; with bf16 on CPU the forward runs on a cached
    pure-bf16 copy of the model with unfused attention (``bf16_weights=None`` → True on CPU;
    False = bf16 autocast on the fp32 model; on CUDA autocast is always used).
    ``total``: number of tiles for progress (inferred for arrays and lists).
    ``progress(done, total, tiles_per_s)`` is called after every batch (``total`` may be None).
    ``prefetch``: batches prepared ahead by the background thread (0 = no thread).
    ``num_threads``: torch intra-op threads during the call (restored afterwards); default: leave
    torch's setting (one per physical core), the producer thread being mostly idle or in GIL-free
    NumPy/decoding code. ``compile``: ``torch.compile`` the model first (≈30 s on CPU); the last
    partial batch is padded so only one shape is compiled.
    """
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = DEFAULT_BATCH_CUDA if dev.type == "cuda" else DEFAULT_BATCH_CPU
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    amp = resolve_dtype(dtype, dev)
    if total is None:
        total = _count(tiles)
    model, cast_input, amp = _inference_model(model, dev, amp, bf16_weights)
    fwd: Callable = torch.compile(model) if compile else model
    done = 0
    t0 = time.perf_counter()
    with _intra_op_threads(num_threads), torch.inference_mode():
        for batch in _prefetch(_rebatch(_chunks(tiles, batch_size), batch_size), prefetch):
            out = _forward(fwd, batch, dev, cast_input, amp, batch_size if compile else 0)
            done += len(out)
            if progress is not None:
                dt = time.perf_counter() - t0
                progress(done, total, done / dt if dt > 0 else float("nan"))
            yield out


def embed_tiles(
    model: torch.nn.Module,
    tiles: np.ndarray | torch.Tensor | Iterable[np.ndarray],
    *,
    batch_size: int | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device = "auto",
    **kwargs: Any,
) -> np.ndarray:
    """Embed all tiles: float32 ``(N, D)`` (``(0, D)`` is not knowable without a forward, so an
    empty input gives ``(0, embed_dim)`` from the model's ``num_features`` when present). Same
    arguments as :func:`embed_batches`."""
    parts = list(embed_batches(model, tiles, batch_size=batch_size, dtype=dtype, device=device, **kwargs))
    if not parts:
        d = int(getattr(model, "num_features", 0) or getattr(model, "embed_dim", 0))
        return np.zeros((0, d), dtype=np.float32)
    return np.concatenate(parts, axis=0)


def input_size_of(checkpoint_config: dict[str, Any], tile_size: int) -> int:
    """The tile side a checkpoint expects: ``input_size`` of its config (a model pre-trained on
    112-px crops embeds tiles resized to 112, as it saw them), else the tile size unchanged."""
    size = checkpoint_config.get("input_size")
    return int(size) if size else int(tile_size)


def resize_tiles(tiles: np.ndarray, size: int) -> np.ndarray:
    """``(n, 3, T, T)`` tiles resized to ``(n, 3, size, size)`` (bilinear, antialiased, as the
    training crops are); returned unchanged when already that size. Keeps the dtype."""
    if tiles.shape[-1] == size and tiles.shape[-2] == size:
        return tiles
    x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32))
    y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=True)
    return y.numpy().astype(tiles.dtype, copy=False)
