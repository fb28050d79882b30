"""Make ``import torchvision`` (and therefore ``import timm``) work on a CPU-only torch.

Why this exists
---------------
The torchvision wheel installed on the development machine is a CUDA build while torch is the
``+cpu`` build. torchvision's compiled C extension (which registers the ``torchvision::nms`` /
``torchvision::qnms`` operator schemas) then fails to load, but ``torchvision/_meta_registrations.py``
still runs at import time and registers *fake* (meta) kernels for those operators with
``torch.library.register_fake("torchvision::nms")``. Registering a fake kernel for an operator whose
schema does not exist raises::

    RuntimeError: operator torchvision::nms does not exist

and, since ``timm`` imports torchvision, ``import timm`` crashes as well.

The fix is to define the two operator *schemas* ourselves (without any kernel) before torchvision
is imported for the first time. torchvision's fake-kernel registrations then succeed and the
package imports. lcd never calls ``nms``/``qnms`` (they would raise "no kernel" if it did); it only
needs torchvision's pure-Python transforms and timm's models.

:func:`ensure_torchvision_importable` is idempotent and a strict no-op wherever the operators are
already registered (a matching torch/torchvision pair, e.g. on a GPU machine, or after torchvision
was imported successfully), so it is safe to call unconditionally. Every lcd module that imports
``timm`` or ``torchvision`` calls it first.
"""

from __future__ import annotations

import threading

import torch

__all__ = ["ensure_torchvision_importable"]

_LOCK = threading.Lock()
# Module-level reference: the schemas are deregistered when the Library object is collected.
_LIB: torch.library.Library | None = None

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _op_exists(name: str) -> bool:
    """True when the operator ``torchvision::<name>`` has a registered schema."""
    finder = getattr(torch._C, "_dispatch_find_schema_or_throw", None)
    if finder is not None:
        try:
            finder(f"torchvision::{name}", "")
            return True
        except RuntimeError:
            return False
    try:  # fallback for torch versions without the private helper
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def _try_load_torchvision_ops() -> None:
    """Let a working torchvision register its real operators first (no-op if the build is broken).

    ``torchvision.extension`` loads the C library lazily; importing only ``torchvision.extension``
    would import ``torchvision/__init__`` and crash, so we load the shared library directly.
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    pkg_dir = spec.submodule_search_locations[0]
    for fname in sorted(os.listdir(pkg_dir)):
        if fname.startswith("_C") and fname.endswith((".so", ".pyd")):
            try:
                torch.ops.load_library(os.path.join(pkg_dir, fname))
            except (OSError, RuntimeError):
                pass  # the CPU/CUDA mismatch lands here: fall back to defining the schemas
            return


def ensure_torchvision_importable() -> None:
    """Define ``torchvision::nms``/``qnms`` schemas if (and only if) they are missing.

    Call before the first ``import torchvision`` / ``import timm``. Idempotent; no-op when the ops
    exist (working torchvision build) or torchvision is not installed.
    """
    global _LIB
    with _LOCK:
        if all(_op_exists(n) for n in _SCHEMAS):
            return
        _try_load_torchvision_ops()
        missing = [n for n in _SCHEMAS if not _op_exists(n)]
        if not missing:
            return
        if _LIB is None:
            # "FRAGMENT" would also work; "DEF" matches what torchvision itself does and allows
            # defining new ops in the namespace. A second "DEF" library for the same namespace is
            # refused by torch, hence the single module-level instance.
            try:
                _LIB = torch.library.Library("torchvision", "DEF")
            except RuntimeError:
                _LIB = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _LIB.define(_SCHEMAS[name])
