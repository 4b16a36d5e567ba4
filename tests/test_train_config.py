"""TrainConfig: presets, precedence (defaults < preset < file < flags), config files, validation."""

from __future__ import annotations

import pytest

from nanogpt.errors import ConfigError, NanoGPTError
from nanogpt.train_config import (TRAIN_PRESETS, TrainConfig, load_config_file, parse_args,
                                  resolve_base, resolve_dtype)


def test_cpu_preset_is_nanogpts_cpu_recipe():
    c = resolve_base("shakespeare-char-cpu")
    # nanoGPT README: --device=cpu --compile=False --eval_iters=20 --block_size=64 --batch_size=12
    # --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
    assert (c.device, c.compile, c.eval_iters, c.block_size, c.batch_size) == ("cpu", False, 20, 64, 12)
    assert (c.n_layer, c.n_head, c.n_embd, c.max_iters, c.lr_decay_iters, c.dropout) == (4, 4, 128, 2000, 2000, 0.0)
    # ... with the rest of config/train_shakespeare_char.py
    assert (c.learning_rate, c.min_lr, c.beta2, c.warmup_iters, c.weight_decay, c.grad_clip,
            c.eval_interval) == (1e-3, 1e-4, 0.99, 100, 0.1, 1.0, 250)
    g = resolve_base("shakespeare-char")
    assert (g.n_layer, g.n_head, g.n_embd, g.block_size, g.batch_size, g.max_iters, g.dropout) == \
        (6, 6, 384, 256, 64, 5000, 0.2)
    assert resolve_base("finetune-shakespeare").init_from == "gpt2"
    assert resolve_base("gpt2-124m").gradient_accumulation_steps == 40
    assert set(TRAIN_PRESETS) == {"shakespeare-char", "shakespeare-char-cpu", "gpt2-124m", "finetune-shakespeare"}


def test_precedence_defaults_preset_file_flags(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('max_iters = 77\nlearning_rate = 2\nout-dir = "from-file"\n')
    c = parse_args(["--preset", "shakespeare-char-cpu", "--config", str(f), "--out-dir", "from-flag"])
    assert c.max_iters == 77  # file beats preset (2000)
    assert c.learning_rate == 2.0 and isinstance(c.learning_rate, float)  # int accepted for a float
    assert c.out_dir == "from-flag"  # flag beats file
    assert c.n_layer == 4  # preset beats default (12)
    assert c.seed == TrainConfig().seed  # untouched default
    assert (c.preset, c.config) == ("shakespeare-char-cpu", str(f))


def test_yaml_file_and_model_table(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("preset: shakespeare-char-cpu\nmodel:\n  n_layer: 2\nbatch_size: 3\n")
    c = parse_args(["--config", str(f), "--no-compile"])
    assert (c.n_layer, c.batch_size, c.block_size, c.compile) == (2, 3, 64, False)


def test_unknown_key_suggests_nearest_name(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("learning_rat = 1e-3\nmax_iter = 5\n")
    with pytest.raises(ConfigError) as e:
        load_config_file(f)
    msg = str(e.value)
    assert "'learning_rat'" in msg and "did you mean 'learning_rate'" in msg
    assert "'max_iter'" in msg and "'max_iters'" in msg  # every problem at once


def test_wrong_types_and_values_listed_together(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('batch_size = 1.5\ncompile = "yes"\n')
    with pytest.raises(ConfigError) as e:
        load_config_file(f)
    assert "batch_size must be an integer" in str(e.value) and "compile must be true or false" in str(e.value)
    with pytest.raises(ConfigError) as e:
        TrainConfig(n_layer=0, beta2=1.5, n_embd=10, n_head=3, device="gpu")
    msg = str(e.value)
    for part in ("n_layer", "beta2", "divisible", "device must be one of"):
        assert part in msg


def test_unknown_preset_and_bad_file(tmp_path):
    with pytest.raises(NanoGPTError, match="did you mean 'shakespeare-char-cpu'"):
        parse_args(["--preset", "shakespeare-char-cp"])
    with pytest.raises(NanoGPTError, match="does not exist"):
        parse_args(["--config", str(tmp_path / "nope.toml")])
    f = tmp_path / "x.json"
    f.write_text("{}")
    with pytest.raises(NanoGPTError, match=r"\.toml, \.yaml or \.yml"):
        load_config_file(f)
    f = tmp_path / "broken.toml"
    f.write_text("a = [")
    with pytest.raises(NanoGPTError, match="cannot parse"):
        load_config_file(f)


def test_cli_typo_flag_exits_2():
    with pytest.raises(SystemExit) as e:
        parse_args(["--max-iter", "5"])
    assert e.value.code == 2


def test_dtype_resolution_on_cpu():
    import torch

    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16


def test_model_config_takes_vocab_from_data():
    c = resolve_base("shakespeare-char-cpu")
    m = c.model_config(vocab_size=65)
    assert (m.vocab_size, m.n_layer, m.block_size, m.bias) == (65, 4, 64, False)
