"""Device and dtype choice: MODEL_DEVICE=auto takes CUDA, then MPS, then the CPU."""

from __future__ import annotations

import torch


def pick_device(setting: str = "auto") -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device.startswith("cuda") else torch.float32
