"""Training loop: learning, exact resume, grad accumulation, faults (NaN, kill -9, signals, ...)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nanogpt import checkpoint as ck
from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.optim import lr_at, make_optimizer, param_groups
from nanogpt.train import Trainer, train
from nanogpt.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def make_char_data(out: Path, text: str, val_fraction: float = 0.1) -> Path:
    """A prepared char-level data dir in nanogpt's token-file format (what `prepare` writes)."""
    from nanogpt.data import dtype_for_vocab, pack_header
    from nanogpt.tokenizer import CharTokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text), dtype=dtype_for_vocab(tok.vocab_size))
    n = int(len(ids) * (1 - val_fraction))
    for split, arr in (("train", ids[:n]), ("val", ids[n:])):
        (out / f"{split}.bin").write_bytes(pack_header(arr.dtype, len(arr)) + arr.tobytes())
    (out / "meta.json").write_text(json.dumps({"tokenizer": tok.to_dict(), "vocab_size": tok.vocab_size}))
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    p = os.environ.get("NANOGPT_SHAKESPEARE")
    text = Path(p).read_text()[:30000] if p and Path(p).exists() else \
        "".join(chr(97 + (i * 7 + i // 13) % 26) + (" " if i % 5 == 4 else "") for i in range(30000))
    return make_char_data(tmp_path_factory.mktemp("data"), text)


def tiny(data_dir: Path, out: Path, **over) -> TrainConfig:
    base = dict(data_dir=str(data_dir), out_dir=str(out), n_layer=1, n_head=2, n_embd=16, block_size=16,
                batch_size=4, max_iters=6, eval_interval=3, eval_iters=2, log_interval=1,
                learning_rate=3e-3, min_lr=3e-4, warmup_iters=2, lr_decay_iters=6, device="cpu",
                progress=False, peak_flops=1e12, seed=7, dropout=0.1)
    return TrainConfig(**{**base, **over})


def metrics(out: Path, kind: str = "train") -> list[dict]:
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return [r for r in lines if r["kind"] == kind]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return ck.read_weights(ck.find_latest(out))


def test_lr_schedule():
    kw = dict(learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert lr_at(0, **kw) == pytest.approx(1 / 11)  # warmup starts above zero
    assert lr_at(9, **kw) == pytest.approx(10 / 11)
    assert lr_at(10, **kw) == pytest.approx(1.0)  # the peak
    assert lr_at(60, **kw) == pytest.approx(0.55)  # cosine halfway: (1 + 0.1) / 2
    assert lr_at(110, **kw) == pytest.approx(0.1) and lr_at(10_000, **kw) == 0.1
    assert lr_at(60, **kw, decay_lr=False) == 1.0


def test_weight_decay_only_on_2d_weights_and_fused():
    from nanogpt.model import GPT, GPTConfig

    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8, bias=True))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == model.num_params()  # the tied head is counted once
    opt = make_optimizer(model, learning_rate=1e-3, weight_decay=0.1, betas=(0.9, 0.99), device_type="cpu")
    assert opt.defaults.get("fused") is True  # torch >= 2.4 has a fused CPU AdamW


def test_loss_goes_down_and_run_dir_is_complete(data_dir, tmp_path):
    res = train(tiny(data_dir, tmp_path, max_iters=40, eval_interval=20, eval_iters=4, dropout=0.0,
                     lr_decay_iters=40, learning_rate=1e-2))
    assert res.status == "done" and res.step == 40
    ev = metrics(tmp_path, "eval")
    assert [e["step"] for e in ev] == [0, 20, 40]
    assert ev[-1]["val_loss"] < ev[0]["val_loss"] - 0.5  # from ~ln(vocab) clearly downwards
    tr = metrics(tmp_path)
    assert set(tr[0]) == {"kind", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "time"}
    assert tr[-1]["tokens"] == 40 * 4 * 16 and tr[-1]["mfu"] > 0
    saved = json.loads((res.checkpoint / "config.json").read_text())
    assert saved["step"] == 40 and saved["train"]["max_iters"] == 40 and saved["model"]["n_embd"] == 16
    assert saved["best_val_loss"] == pytest.approx(min(e["val_loss"] for e in ev))
    assert (tmp_path / "best").resolve().name.startswith("ckpt-")
    loaded = ck.load_model(str(tmp_path))  # what `nanogpt sample OUT` uses
    assert loaded.tokenizer.vocab_size == loaded.model.config.vocab_size


def test_resume_is_bitwise_exact(data_dir, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny(data_dir, straight))
    first = train(tiny(data_dir, split, max_iters=3))  # lr schedule fixed by lr_decay_iters
    assert first.step == 3
    res = train(tiny(data_dir, split, init_from="resume"))
    assert res.step == 6
    a, b = weights(straight), weights(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [(m["step"], m["loss"], m["grad_norm"]) for m in metrics(straight)]
    lb = [(m["step"], m["loss"], m["grad_norm"]) for m in metrics(split)]
    assert la == lb  # same losses, bit for bit (dropout RNG and loader position restored)
    assert [e["val_loss"] for e in metrics(straight, "eval")] == [e["val_loss"] for e in metrics(split, "eval")]


def test_grad_accumulation_matches_a_bigger_batch(data_dir, tmp_path):
    # 2 micro-batches of 4 read the same stream samples as 1 batch of 8.
    train(tiny(data_dir, tmp_path / "a", batch_size=8, dropout=0.0))
    train(tiny(data_dir, tmp_path / "b", batch_size=4, gradient_accumulation_steps=2, dropout=0.0))
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    la, lb = [m["loss"] for m in metrics(tmp_path / "a")], [m["loss"] for m in metrics(tmp_path / "b")]
    assert la == pytest.approx(lb, rel=1e-5)


def test_nan_stops_before_the_step_and_keeps_last_good(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGPT_TEST_NAN_AT_STEP", "5")
    res = train(tiny(data_dir, tmp_path))
    assert res.status == "nan" and res.step == 4
    assert "step 5" in res.message and "ckpt-00000003" in res.message
    assert ck.find_latest(tmp_path).name == "ckpt-00000003"
    monkeypatch.delenv("NANOGPT_TEST_NAN_AT_STEP")
    res = train(tiny(data_dir, tmp_path, init_from="resume"))  # the run goes on from the good one
    assert res.status == "done" and res.step == 6


def test_nan_skip_continues(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGPT_TEST_NAN_AT_STEP", "2")
    res = train(tiny(data_dir, tmp_path, on_nan="skip"))
    assert res.status == "done" and res.step == 6
    assert all(torch.isfinite(v).all() for v in weights(tmp_path).values())


def test_resume_with_other_architecture_lists_mismatches(data_dir, tmp_path):
    train(tiny(data_dir, tmp_path, max_iters=3))
    with pytest.raises(ConfigError) as e:
        Trainer(tiny(data_dir, tmp_path, init_from="resume", n_layer=2, n_embd=32))
    msg = str(e.value)
    assert "n_layer: checkpoint 1, now 2" in msg and "n_embd: checkpoint 16, now 32" in msg


def test_resume_without_checkpoint_and_truncated_newest(data_dir, tmp_path):
    with pytest.raises(NanoGPTError, match="nothing to resume"):
        Trainer(tiny(data_dir, tmp_path / "none", init_from="resume"))
    train(tiny(data_dir, tmp_path))  # checkpoints at 3 and 6
    with pytest.raises(NanoGPTError, match="already holds checkpoints"):
        Trainer(tiny(data_dir, tmp_path))  # a fresh run would mix with the old one
    with open(tmp_path / "ckpt-00000006" / "state.pt", "r+b") as f:
        f.truncate(10)
    t = Trainer(tiny(data_dir, tmp_path, init_from="resume"))
    assert t.step == 3 and t.resumed_from.name == "ckpt-00000003"
    t.close()


def test_finetune_from_hf_dir_crops_block_size_and_from_checkpoint(data_dir, tmp_path):
    from nanogpt.model import GPT, GPTConfig

    base = GPT(GPTConfig(block_size=32, vocab_size=80, n_layer=1, n_head=2, n_embd=16, bias=True,
                         activation="gelu_tanh"))
    base.save_hf(str(tmp_path / "hf"))  # a local Hugging Face GPT-2 directory
    t = Trainer(tiny(data_dir, tmp_path / "ft", init_from=str(tmp_path / "hf"), block_size=16))
    assert t.step == 0 and t.model_config.block_size == 16 and t.model_config.n_layer == 1
    torch.testing.assert_close(t.raw_model.transformer.wpe.weight, base.transformer.wpe.weight[:16])
    torch.testing.assert_close(t.raw_model.transformer.h[0].mlp.c_fc.weight, base.transformer.h[0].mlp.c_fc.weight)
    with pytest.raises(NanoGPTError, match="exceeds"):
        Trainer(tiny(data_dir, tmp_path / "ft2", init_from=str(tmp_path / "hf"), block_size=64))
    # From a nanogpt run: its weights, a fresh optimizer at step 0.
    train(tiny(data_dir, tmp_path / "a", max_iters=3))
    t = Trainer(tiny(data_dir, tmp_path / "b", init_from=str(tmp_path / "a")))
    w = weights(tmp_path / "a")
    assert t.step == 0 and not t.optimizer.state
    assert torch.equal(t.raw_model.transformer.wte.weight, w["transformer.wte.weight"])
    with pytest.raises(NanoGPTError, match="unknown init_from"):
        Trainer(tiny(data_dir, tmp_path / "c", init_from="nonsense"))


@pytest.mark.parametrize("option, extra", [("wandb_log", "wandb"), ("tensorboard", "tensorboard")])
def test_missing_optional_logger_is_a_clear_error(data_dir, tmp_path, monkeypatch, option, extra):
    monkeypatch.setitem(sys.modules, extra, None)  # as if not installed: find_spec gives None
    with pytest.raises(NanoGPTError, match=rf"pip install 'nanogpt\[{extra}\]'"):
        Trainer(tiny(data_dir, tmp_path, **{option: True}))


def test_tensorboard_and_wandb_receive_the_metrics(data_dir, tmp_path, monkeypatch):
    """The real libraries (test extra), offline: TensorBoard event files and a wandb offline run."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    train(tiny(data_dir, tmp_path / "run", tensorboard=True, wandb_log=True, wandb_run_name="t"))
    acc = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/val_loss" in tags
    assert [e.step for e in acc.Scalars("eval/val_loss")] == [0, 3, 6]
    metrics = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [m["val_loss"] for m in metrics if m["kind"] == "eval"]
    assert [e.value for e in acc.Scalars("eval/val_loss")] == pytest.approx(evals)
    runs = list((tmp_path / "wandb").rglob("*.wandb"))
    assert runs, "wandb wrote no offline run file"


def test_dataset_too_small_for_block_size(tmp_path):
    d = make_char_data(tmp_path / "small", "hello world, this is tiny." * 4, val_fraction=0.2)
    with pytest.raises(NanoGPTError, match="fewer than block_size"):
        Trainer(tiny(d, tmp_path / "out", block_size=64))


def test_missing_data_dir_says_how_to_prepare(tmp_path):
    with pytest.raises(NanoGPTError, match="nanogpt prepare shakespeare_char"):
        Trainer(tiny(tmp_path / "data" / "shakespeare_char", tmp_path / "out"))


def test_compile_failure_falls_back(data_dir, tmp_path, monkeypatch, caplog):
    import nanogpt.train as train_mod

    class Broken(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

        def forward(self, *a, **k):
            raise RuntimeError("inductor exploded")

    monkeypatch.setattr(torch, "compile", lambda m, **k: Broken(m))
    monkeypatch.setattr(train_mod, "compile_unsupported_reason", lambda d: None)
    train(tiny(data_dir, tmp_path / "c", compile=True, max_iters=3))
    assert "torch.compile failed" in caplog.text
    train(tiny(data_dir, tmp_path / "p", max_iters=3))
    a, b = weights(tmp_path / "c"), weights(tmp_path / "p")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same batches were redone eagerly


def _cli(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "nanogpt", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _args(data_dir: Path, out: Path, **over) -> list[str]:
    cfg = tiny(data_dir, out, **over).to_dict()
    out_args = []
    for k, v in cfg.items():
        if k in ("preset", "config") or v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out_args.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            out_args += [flag, str(v)]
    return out_args


def _wait_for(pred, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_save(data_dir, tmp_path):
    # The save of step 4 pauses after writing the weights; SIGKILL it there.
    p = _cli(_args(data_dir, tmp_path, eval_interval=2, max_iters=6),
             {"NANOGPT_TEST_PAUSE_IN_SAVE": "4:60"})
    try:
        assert _wait_for(lambda: any((d / "model.safetensors").exists()
                                     for d in tmp_path.glob(".tmp-ckpt-00000004-*")))
    finally:
        p.kill()
        p.communicate()
    assert p.returncode == -signal.SIGKILL
    assert ck.find_latest(tmp_path).name == "ckpt-00000002"
    assert ck.load_model(str(tmp_path)).source.endswith("ckpt-00000002")
    res = train(tiny(data_dir, tmp_path, init_from="resume", eval_interval=2))
    assert res.step == 6 and not list(tmp_path.glob(".tmp-*"))
    train(tiny(data_dir, tmp_path / "straight", eval_interval=2))  # and it is still exact
    a, b = weights(tmp_path), weights(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_step_saves_and_exits(data_dir, tmp_path, sig, code):
    p = _cli(_args(data_dir, tmp_path, max_iters=100000, eval_interval=100000, lr_decay_iters=100000))
    try:
        assert _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and len(metrics(tmp_path)) >= 3)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == code, err
    assert "Traceback" not in err and "resume with" in out
    latest = ck.find_latest(tmp_path)
    step = json.loads((latest / "config.json").read_text())["step"]
    assert step >= 3 and metrics(tmp_path)[-1]["step"] <= step


def test_cli_reports_bad_config_in_one_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("learning_rat = 1\n")
    r = subprocess.run([sys.executable, "-m", "nanogpt", "train", "--config", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"nanogpt train: error: invalid config file '{f}': unknown key 'learning_rat' "
        f"(did you mean 'learning_rate'?)"]
