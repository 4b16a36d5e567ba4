"""A preallocated key/value cache for incremental decoding.

Each attention layer appends its new keys and values at position `pos` and attends over
everything cached so far. Buffers are allocated once for the whole context, so decoding a token
copies only that token's K and V, never the growing history.
"""

from __future__ import annotations

import torch


class KVCache:
    """K and V buffers of shape (n_layer, B, nh, max_len, hs), filled up to `pos`."""

    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_size: int,
                 *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (n_layer, batch_size, n_head, max_len, head_size)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.pos = 0  # tokens already cached (the absolute position of the next token)

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int | None = None) -> "KVCache":
        c = model.config
        p = next(model.parameters())
        return cls(c.n_layer, batch_size, c.n_head, max_len or c.block_size, c.head_size,
                   dtype=p.dtype, device=p.device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at pos..pos+T; return all cached (B, nh, pos+T, hs)."""
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > capacity {self.max_len}")
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Called by the model once all layers have stored this step's n tokens."""
        self.pos += n

    def truncate(self, pos: int) -> None:
        """Forget every position from pos on (e.g. rejected draft tokens); they get overwritten."""
        if not 0 <= pos <= self.pos:
            raise ValueError(f"cannot truncate a KV cache holding {self.pos} positions to {pos}")
        self.pos = pos

    def reset(self) -> None:
        self.pos = 0
