"""The optimizer and learning-rate schedule used by training: AdamW groups and warmup + cosine.

Weight decay goes on the 2-D weights only (matmul weights and embeddings); biases and LayerNorm
gains are not decayed, as in GPT-2/nanoGPT. The fused AdamW kernel is used where the device
supports it (CUDA, and CPU in recent torch), else the multi-tensor (foreach) one.
"""

from __future__ import annotations

import inspect
import logging
import math

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed (dim >= 2) and not decayed (dim < 2). Tied weights count once."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() dedups tied ones
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fused_supported(device_type: str) -> bool:
    """Whether AdamW(fused=True) runs on this device type with this torch."""
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    if device_type == "cuda":
        return True
    try:  # CPU/MPS support depends on the torch version: try one tiny step
        p = nn.Parameter(torch.zeros(2, device=device_type))
        p.grad = torch.ones(2, device=device_type)
        torch.optim.AdamW([p], lr=1e-3, fused=True).step()
        return True
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def make_optimizer(model: nn.Module, *, learning_rate: float, weight_decay: float,
                   betas: tuple[float, float], device_type: str) -> torch.optim.AdamW:
    fused = fused_supported(device_type)
    kwargs = {"fused": True} if fused else {}
    if not fused:
        log.info("fused AdamW is not available on %s; using the default implementation", device_type)
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=learning_rate, betas=betas, **kwargs)


def lr_at(step: int, *, learning_rate: float, min_lr: float, warmup_iters: int,
          lr_decay_iters: int, decay_lr: bool = True) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine to min_lr.

    Warmup ramps (step + 1) / (warmup_iters + 1) of the peak, so step 0 is not zero; after
    lr_decay_iters the rate stays at min_lr.
    """
    if not decay_lr:
        return learning_rate
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_lr
    span = max(1, lr_decay_iters - warmup_iters)
    ratio = (step - warmup_iters) / span  # 0 -> 1 over the decay
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return min_lr + coeff * (learning_rate - min_lr)
