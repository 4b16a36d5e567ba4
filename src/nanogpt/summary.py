"""What a model costs: the parameter table, FLOPs per token and memory, from a GPTConfig alone.

Everything here is analytic, so `nanogpt summary gpt2-xl` needs neither weights nor memory; the
tests cross-check the counts against instantiated models. A name that is a preset (`gpt2`, ...)
resolves to its config first, so no weights are downloaded; other specs (a run or checkpoint dir,
a Hugging Face dir) go through `nanogpt.checkpoint.load_model`.

Memory accounting (bytes), for mixed-precision training with AdamW at compute dtype `dtype`:
- weights: every parameter once (the tied head is wte) in `dtype`; gradients: the same again.
- optimizer: AdamW's two moments in fp32 (8 B/param) plus an fp32 master copy of the weights
  (4 B/param) when `dtype` is not fp32 (with fp32 the weights are their own master).
- activations: the tensors autograd saves for the backward pass (measured against
  torch.autograd.graph.saved_tensors_hooks in the tests). With s = B*T tokens, C = n_embd,
  nh = n_head, V = padded vocab and e = bytes of `dtype`, per layer:
      e * s * 16C               ln_1 in, c_attn in, q k v (3C, one fused tensor), attention out
                                (= c_proj in), ln_2 in, c_fc in, GELU in (4C), mlp c_proj in (4C)
    + 8 * s * 2                 the two LayerNorms' mean and rstd (fp32)
    + 4 * B*nh*T                flash: the fused kernel's log-sum-exp (fp32), no T x T matrix
      or e * B*nh*T*T + T*T     reference: the softmax probabilities and the bool causal mask
    + 2 * s*C (+ B*nh*T*T)      1-byte dropout masks after attn and MLP (and on the probs with
                                the reference kernel), only when dropout > 0
  and outside the blocks: ln_f in and out (2 e*s*C) and stats (8 s), the loss's fp32 log-softmax
  (4 s*V, usually the largest single tensor), token ids and targets (16 s), positions (8 T), and
  s*C for the embedding dropout mask when dropout > 0.
  Activations are counted in `dtype`, as in pure half-precision compute with fp32 master
  weights. Under torch.autocast the residual stream and LayerNorms stay fp32, so expect more.
  This follows Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
  Models", adapted to this model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from nanogpt.errors import ConfigError, NanoGPTError, suggest
from nanogpt.flops import forward_flops_per_token, matmul_params, train_flops_per_token
from nanogpt.model import PRESETS, GPTConfig

log = logging.getLogger(__name__)

DType = Literal["fp32", "bf16", "fp16"]
AttnKernel = Literal["flash", "reference"]
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class SummaryConfig:
    """Options of `nanogpt summary`."""

    model: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")] = "gpt2"
    """a preset (gpt2, shakespeare-char, ...), run dir, checkpoint dir, GPT-2 name or HF dir"""
    batch_size: int = 12
    """sequences per step, for activation memory and FLOPs per step"""
    seq_len: int | None = None
    """tokens per sequence (default: the model's block_size)"""
    dtype: DType = "bf16"
    """compute dtype of weights, gradients and activations"""
    attention: AttnKernel = "flash"
    """flash: a fused kernel that keeps no T x T matrix; reference: softmax probs are saved"""
    json: bool = False
    """print JSON instead of a text table"""


@dataclass
class Row:
    """One line of the parameter table. `params` includes the bias; `shape` is the weight's."""

    name: str
    shape: str
    params: int
    note: str = ""


@dataclass
class ModelSummary:
    """Everything `nanogpt summary` reports; `to_dict()` is the --json output."""

    source: str
    config: dict[str, Any]
    rows: list[Row]  # the table in model order: embeddings, one block's parts, blocks, ln_f, head
    block_rows: list[Row]  # the parts of one block
    total_params: int
    non_embedding_params: int
    tied_saving: int  # what an untied head would add
    flops: dict[str, float]
    memory: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_rows(config: GPTConfig) -> list[Row]:
    """The parameterised parts of one transformer block."""
    C, b = config.n_embd, int(config.bias)

    def linear(name: str, n_in: int, n_out: int, note: str) -> Row:
        shape = f"{n_in} x {n_out}" + (f" + {n_out}" if b else "")
        return Row(name, shape, n_in * n_out + b * n_out, note)

    def norm(name: str) -> Row:
        return Row(name, f"{C}" + (f" + {C}" if b else ""), C + b * C, "LayerNorm gain" + (" and bias" if b else ""))

    return [
        norm("ln_1"),
        linear("attn.c_attn", C, 3 * C, "Q, K, V in one projection (C x 3C)"),
        linear("attn.c_proj", C, C, "attention output projection (C x C)"),
        norm("ln_2"),
        linear("mlp.c_fc", C, 4 * C, "MLP expand (C x 4C)"),
        linear("mlp.c_proj", 4 * C, C, "MLP project back (4C x C)"),
    ]


def param_rows(config: GPTConfig) -> tuple[list[Row], list[Row]]:
    """(whole-model rows, one block's rows). The head is tied to wte and so adds nothing."""
    C, L, V, Vp = config.n_embd, config.n_layer, config.vocab_size, config.padded_vocab_size
    b = int(config.bias)
    parts = block_rows(config)
    per_block = sum(r.params for r in parts)
    pad = f", {V} padded to {Vp}" if Vp != V else ""
    rows = [
        Row("wte", f"{Vp} x {C}", Vp * C, "token embedding (vocab x C)" + pad),
        Row("wpe", f"{config.block_size} x {C}", config.block_size * C, "position embedding (block_size x C)"),
        Row(f"blocks (x{L})", f"{L} x {per_block:,}", L * per_block, f"{L} blocks of {per_block:,}"),
        Row("ln_f", f"{C}" + (f" + {C}" if b else ""), C + b * C, "final LayerNorm"),
        Row("lm_head", f"{C} x {Vp}", 0, "shared with wte (weight tying), +0"),
    ]
    return rows, parts


def activation_bytes(config: GPTConfig, batch_size: int, seq_len: int, dtype: str,
                     attention: str = "flash") -> dict[str, int]:
    """Bytes autograd keeps for backward at this batch; see the module docstring for the formula."""
    B, T, C, nh, L = batch_size, seq_len, config.n_embd, config.n_head, config.n_layer
    V, e, s = config.padded_vocab_size, DTYPE_BYTES[dtype], batch_size * seq_len
    per_layer = e * s * 16 * C + 8 * s * 2  # (B, T, 16C) of saved inputs + LayerNorm stats
    if attention == "reference":
        per_layer += e * B * nh * T * T + T * T  # softmax probs (B, nh, T, T) + bool mask (T, T)
    else:
        per_layer += 4 * B * nh * T  # log-sum-exp (B, nh, T), fp32
    if config.dropout > 0:
        per_layer += s * 2 * C + (B * nh * T * T if attention == "reference" else 0)
    outside = 2 * e * s * C + 8 * s + 4 * s * V + 16 * s + 8 * T
    if config.dropout > 0:
        outside += s * C  # embedding dropout mask
    return {"per_layer": per_layer, "layers": L * per_layer, "outside_blocks": outside,
            "total": L * per_layer + outside}


def summarize(config: GPTConfig, *, source: str = "", batch_size: int = 12, seq_len: int | None = None,
              dtype: str = "bf16", attention: str = "flash") -> ModelSummary:
    """The parameter table, FLOPs and memory of `config` (nothing is instantiated)."""
    T = config.block_size if seq_len is None else seq_len
    problems = []
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        problems.append(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(T, bool) or not isinstance(T, int) or not 0 < T <= config.block_size:
        problems.append(f"seq_len must be between 1 and block_size ({config.block_size}), got {T!r}")
    if dtype not in DTYPE_BYTES:
        problems.append(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if attention not in ("flash", "reference"):
        problems.append(f"attention must be 'flash' or 'reference', got {attention!r}")
    if problems:
        raise ConfigError("summary options", problems)
    rows, parts = param_rows(config)
    total = sum(r.params for r in rows)
    wte, wpe = rows[0].params, rows[1].params
    n_tok = batch_size * T
    fwd, train = forward_flops_per_token(config, T), train_flops_per_token(config, T)
    flops = {
        "matmul_params": float(matmul_params(config)),
        "forward_per_token": float(fwd),
        "train_per_token": float(train),
        "forward_per_step": float(fwd * n_tok),
        "train_per_step": float(train * n_tok),
    }
    e = DTYPE_BYTES[dtype]
    act = activation_bytes(config, batch_size, T, dtype, attention)
    memory = {
        "weights": total * e,
        "gradients": total * e,
        "optimizer_moments": total * 8,  # AdamW exp_avg + exp_avg_sq, fp32
        "master_weights": 0 if dtype == "fp32" else total * 4,
        "activations": act["total"],
        "activations_per_layer": act["per_layer"],
    }
    memory["training_total"] = (memory["weights"] + memory["gradients"] + memory["optimizer_moments"]
                                + memory["master_weights"] + memory["activations"])
    return ModelSummary(
        source=source or "config", config=config.to_dict(), rows=rows, block_rows=parts,
        total_params=total, non_embedding_params=total - wte - wpe, tied_saving=wte,
        flops=flops, memory=memory,
        settings={"batch_size": batch_size, "seq_len": T, "dtype": dtype, "attention": attention},
    )


def resolve_config(spec: str, *, device: str = "cpu") -> tuple[GPTConfig, str, Any]:
    """(config, source, loaded-or-None). Presets resolve without weights; else load_model(spec)."""
    if spec in PRESETS:
        return GPTConfig.from_preset(spec), f"preset {spec}", None
    if not Path(spec).exists() and "/" not in spec and "\\" not in spec:
        raise NanoGPTError(
            f"unknown model {spec!r}{suggest(spec, PRESETS)}: give a preset "
            f"({', '.join(PRESETS)}), a run dir, a checkpoint dir or a Hugging Face GPT-2 dir"
        )
    from nanogpt.checkpoint import load_model  # only real checkpoints need the checkpoint module

    loaded = load_model(spec, device)
    return loaded.model.config, loaded.source, loaded


def run_summary(cfg: SummaryConfig) -> ModelSummary:
    """Resolve cfg.model and summarise it; a loaded model's own count must agree with the table."""
    config, source, loaded = resolve_config(cfg.model)
    s = summarize(config, source=source, batch_size=cfg.batch_size, seq_len=cfg.seq_len,
                  dtype=cfg.dtype, attention=cfg.attention)
    if loaded is not None and loaded.model.num_params() != s.total_params:
        raise NanoGPTError(  # a checkpoint whose tensors disagree with its own config
            f"{source}: the model has {loaded.model.num_params():,} parameters but its config "
            f"implies {s.total_params:,}; the checkpoint may be corrupt"
        )
    return s


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (powers of 1000); for byte counts pass unit='B' to get GiB etc."""
    if unit == "B":
        for u, d in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(n) >= d:
                return f"{n / d:.2f} {u}"
        return f"{int(n)} B"
    for u, d in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= d:
            return f"{n / d:.3g}{u}"  # three significant figures, as the seed writes 38.6M
    return f"{n:g}"


def format_summary(s: ModelSummary) -> str:
    """The plain-text report: the seed's table with shares, then FLOPs and memory."""
    c, total = s.config, s.total_params
    L = c["n_layer"]
    head = (f"{s.source}: n_layer={L} n_head={c['n_head']} n_embd={c['n_embd']} "
            f"block_size={c['block_size']} vocab_size={c['vocab_size']} bias={c['bias']}")
    w = (17, 22, 13, 8, 8)
    lines = [head, "", f"{'component':<{w[0]}}{'shape':<{w[1]}}{'params':>{w[2]}}{'approx':>{w[3]}}"
             f"{'share':>{w[4]}}  note", "-" * 100]

    def line(name: str, shape: str, n: int, note: str) -> str:
        share = f"{100 * n / total:.1f}%" if total else "-"
        approx = human(n) if n else "+0"
        return f"{name:<{w[0]}}{shape:<{w[1]}}{n:>{w[2]},}{approx:>{w[3]}}{share:>{w[4]}}  {note}"

    blocks = s.rows[2]
    lines += [line(r.name, r.shape, r.params, r.note) for r in s.rows[:2]]
    lines.append(f"per block (each of {L}):")
    lines += [line("  " + r.name, r.shape, r.params, r.note) for r in s.block_rows]
    per_block = sum(r.params for r in s.block_rows)
    lines.append(line("  block total", "", per_block, "one block"))
    lines += [line(r.name, r.shape, r.params, r.note) for r in [blocks, *s.rows[3:]]]
    lines += ["-" * 100, line("total", "", total, "each parameter once; the tied head is wte"),
              line("non-embedding", "", s.non_embedding_params, "total - wte - wpe"),
              f"weight tying saves {s.tied_saving:,} parameters (~{human(s.tied_saving)})", ""]
    st, f, m = s.settings, s.flops, s.memory
    lines += [
        f"FLOPs per token at seq_len {st['seq_len']}: forward {human(f['forward_per_token'])}, "
        f"training (fwd+bwd) {human(f['train_per_token'])}  [6N + 12*L*C*T, N={int(f['matmul_params']):,}]",
        f"FLOPs per step (batch {st['batch_size']} x {st['seq_len']} tokens): forward "
        f"{human(f['forward_per_step'])}, training {human(f['train_per_step'])}",
        "",
        f"memory ({st['dtype']} compute, AdamW, batch {st['batch_size']} x {st['seq_len']}, "
        f"{st['attention']} attention):",
        f"  weights            {human(m['weights'], 'B'):>12}",
        f"  gradients          {human(m['gradients'], 'B'):>12}",
        f"  AdamW moments      {human(m['optimizer_moments'], 'B'):>12}  (2 fp32 states)",
        f"  fp32 master copy   {human(m['master_weights'], 'B'):>12}",
        f"  activations        {human(m['activations'], 'B'):>12}  "
        f"({human(m['activations_per_layer'], 'B')} per layer + embeddings and logits)",
        f"  training total     {human(m['training_total'], 'B'):>12}",
        f"  inference weights  {human(m['weights'], 'B'):>12}",
    ]
    return "\n".join(lines)
