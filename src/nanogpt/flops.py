"""FLOP accounting and hardware peaks, shared by `summary`, `train` (MFU) and `bench`.

The standard count (Kaplan et al. 2020; PaLM appendix B; nanoGPT's estimate_mfu):
a training token costs 6N FLOPs for the weight matmuls (2N forward, 4N backward) plus
12 * n_layer * n_embd * T for attention scores and the weighted sum of values, where
N counts every parameter used in a matmul: all parameters except the position embedding
(the tied token embedding is used as the head's matmul, so it counts). Attention is counted over
the full T x T square, ignoring the causal mask, as PaLM and nanoGPT do. A forward pass alone is
one third of that. LayerNorm, GELU, softmax and the optimizer are not counted.
"""

from __future__ import annotations

import time

import torch

from nanogpt.model import GPTConfig


def matmul_params(config: GPTConfig) -> int:
    """Parameters that take part in a matmul for each token: everything but wpe, with biases."""
    C, L, V = config.n_embd, config.n_layer, config.padded_vocab_size
    b = 1 if config.bias else 0
    per_block = (C * 3 * C + b * 3 * C) + (C * C + b * C) + (C * 4 * C + b * 4 * C) + (4 * C * C + b * C)
    per_block += 2 * (C + b * C)  # the two LayerNorms
    return V * C + L * per_block + (C + b * C)


def forward_flops_per_token(config: GPTConfig, seq_len: int | None = None) -> float:
    """Forward FLOPs per token at context length seq_len (default: block_size)."""
    T = config.block_size if seq_len is None else seq_len
    return 2 * matmul_params(config) + 4 * config.n_layer * config.n_embd * T


def train_flops_per_token(config: GPTConfig, seq_len: int | None = None) -> float:
    """Forward plus backward FLOPs per token: 6N + 12 L C T."""
    return 3 * forward_flops_per_token(config, seq_len)


# Dense peak FLOP/s by device-name substring and dtype, from vendors' data sheets (no sparsity).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "H100 PCIe": {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp16": 989e12, "tf32": 494e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "A10G": {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30e12},
    "RTX 4090": {"bf16": 165e12, "fp16": 165e12, "tf32": 82.6e12, "fp32": 82.6e12},
    "RTX 3090": {"bf16": 71e12, "fp16": 71e12, "tf32": 35.6e12, "fp32": 35.6e12},
    "V100": {"fp16": 125e12, "fp32": 15.7e12},
    "T4": {"fp16": 65e12, "fp32": 8.1e12},
}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return "cpu"


def peak_flops(device: torch.device | str, dtype: str) -> float | None:
    """The data-sheet peak for this device and dtype ('bf16', 'fp16', 'fp32', 'tf32'), if known."""
    name = device_name(device)
    for key, table in PEAK_FLOPS.items():  # longer, more specific keys come first
        if key in name:
            return table.get(dtype)
    return None


# Square sizes timed for the matmul peak. Every one is far larger than any single matmul of the
# small CPU presets (e.g. 768x128x384), so none of them flatters the ratio by matching the model's
# shapes; the best of several sizes is the "hardware limit" that BLAS reaches on this machine.
PEAK_SIZES: dict[str, tuple[int, ...]] = {"cpu": (512, 1024, 2048), "cuda": (4096, 8192)}

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "tf32": torch.float32,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def torch_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """'bf16' / 'bfloat16' / torch.bfloat16 -> torch.bfloat16 (and so on)."""
    return dtype if isinstance(dtype, torch.dtype) else _DTYPES[dtype]


def measure_matmul_peaks(device: torch.device | str = "cpu", dtype: torch.dtype | str = torch.float32,
                         sizes: tuple[int, ...] | None = None,
                         seconds: float = 1.0) -> dict[int, float]:
    """FLOP/s of an n x n x n matmul for each n in sizes: the fastest of repeats within the budget.

    The fastest repeat (not the median) is taken so that the peak is an upper bound on what this
    device does at that moment: on a shared machine, contention only ever lowers it, which makes
    a model's ratio to it conservative rather than flattering.
    """
    device = torch.device(device)
    dt = torch_dtype(dtype)
    if sizes is None:
        sizes = PEAK_SIZES.get(device.type, PEAK_SIZES["cpu"])

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out: dict[int, float] = {}
    per_size = seconds / len(sizes)
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        for _ in range(3):  # warm-up: thread pools, clocks, kernel selection
            a @ b
        sync()
        best = float("inf")
        deadline = time.perf_counter() + per_size
        reps = 0
        while reps < 3 or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - t0)
            reps += 1
        out[n] = 2 * n**3 / best
        del a, b
    return out


def measure_matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype | str = torch.float32,
                        n: int | None = None, seconds: float = 1.0) -> float:
    """FLOP/s of large square matmuls on this device: the best over PEAK_SIZES (or just size n).

    This is the practical ceiling that model FLOP/s is compared with on machines whose
    data-sheet peak is unknown or meaningless (shared, throttled CPUs).
    """
    peaks = measure_matmul_peaks(device, dtype, None if n is None else (n,), seconds)
    return max(peaks.values())


def generate_flops(config: GPTConfig, prompt_len: int, new_tokens: int) -> float:
    """Forward FLOPs of KV-cached generation of new_tokens after a prompt, for one sequence.

    The prefill runs the prompt's P tokens through the blocks (attention over the full P x P
    square, the same convention as training) and the head on the last position only; each decoded
    token at absolute position t then costs 2N plus 4 * n_layer * n_embd * (t + 1) for attending
    to the t + 1 cached positions. The last sampled token is never fed back, so new_tokens - 1
    decode steps run after the prefill.
    """
    C, L = config.n_embd, config.n_layer
    head = config.padded_vocab_size * C
    n = matmul_params(config)
    P = prompt_len
    flops = 2 * (n - head) * P + 2 * head + 4 * L * C * P * P
    for t in range(P, P + max(new_tokens - 1, 0)):
        flops += 2 * n + 4 * L * C * (t + 1)
    return float(flops)
