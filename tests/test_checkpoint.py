"""Checkpoints: atomic layout, newest-complete lookup, damage detection, retention, load_model."""

from __future__ import annotations

import io
import json
import random

import pytest
import torch

from nanogpt import checkpoint as ck
from nanogpt.errors import NanoGPTError
from nanogpt.model import GPT, GPTConfig

CFG = GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, n_embd=8, bias=False)
CHARS = list("abcdefghij\n")


def _save(run, step, model=None):
    model = model or GPT(CFG)
    config = {"model": model.config.to_dict(), "train": {}, "step": step, "best_val_loss": None,
              "tokenizer": {"name": "char", "chars": CHARS, "vocab_size": len(CHARS)},
              "nanogpt_version": "test"}
    return ck.save_checkpoint(run, step, weights=ck.model_state(model), config=config,
                              state={"step": step, "rng": [ck.rng_state()]})


def test_layout_and_roundtrip(tmp_path):
    model = GPT(CFG)
    path = _save(tmp_path, 7, model)
    assert path.name == "ckpt-00000007"
    assert sorted(p.name for p in path.iterdir()) == ["COMPLETE", "config.json", "model.safetensors", "state.pt"]
    assert ck.is_complete(path) and ck.find_latest(tmp_path) == path
    from safetensors.torch import load_file

    keys = set(load_file(str(path / "model.safetensors")))
    assert "lm_head.weight" not in keys and "transformer.wte.weight" in keys  # tied: stored once
    loaded = ck.load_model(str(tmp_path))
    assert loaded.source == str(path) and loaded.tokenizer.decode(loaded.tokenizer.encode("abj")) == "abj"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.transformer.wte.weight.data_ptr()
    assert ck.load_model(str(path)).source == str(path)  # a checkpoint dir directly


def test_compiled_and_ddp_prefixes_never_saved():
    model = GPT(CFG)
    compiled = torch.compile(model)  # an OptimizedModule; nothing is compiled until it runs
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    keys = ck.model_state(compiled)
    assert not any("_orig_mod" in k or k.startswith("module.") for k in keys)
    assert set(keys) == set(model.state_dict()) - {"lm_head.weight"}


def test_newest_incomplete_or_truncated_is_skipped(tmp_path):
    good = _save(tmp_path, 2)
    newer = _save(tmp_path, 4)
    (newer / "COMPLETE").unlink()  # a crash between the rename and the marker
    assert ck.find_latest(tmp_path) == good
    newest = _save(tmp_path, 6)
    with open(newest / "model.safetensors", "r+b") as f:  # truncated after the fact
        f.truncate(100)
    assert not ck.is_complete(newest)
    assert ck.find_latest(tmp_path) == good
    with pytest.raises(NanoGPTError, match="incomplete or damaged"):
        ck.load_model(str(newest))
    assert ck.load_model(str(tmp_path)).source == str(good)


def test_leftover_temp_dir_is_ignored_and_cleaned(tmp_path):
    good = _save(tmp_path, 2)
    junk = tmp_path / ".tmp-ckpt-00000004-deadbeef"
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(b"partial")
    assert ck.find_latest(tmp_path) == good
    _save(tmp_path, 4)
    ck.prune(tmp_path, keep_last=5)
    assert not junk.exists()


def test_prune_keeps_last_k_and_best(tmp_path):
    paths = [_save(tmp_path, s) for s in (1, 2, 3, 4, 5)]
    ck.update_best(tmp_path, paths[1])
    removed = ck.prune(tmp_path, keep_last=2)
    left = sorted(p.name for _, p in ck.list_checkpoints(tmp_path))
    assert left == ["ckpt-00000002", "ckpt-00000004", "ckpt-00000005"]
    assert {p.name for p in removed} == {"ckpt-00000001", "ckpt-00000003"}
    assert (tmp_path / "best").resolve() == paths[1].resolve()
    assert ck.load_model(str(tmp_path / "best")).source.endswith("best")
    ck.update_best(tmp_path, paths[4])  # the link is swapped atomically
    assert (tmp_path / "best").resolve() == paths[4].resolve()


def test_resave_same_step_replaces(tmp_path):
    a = _save(tmp_path, 3)
    b = _save(tmp_path, 3)
    assert a == b and ck.is_complete(b)
    assert not list(tmp_path.glob(".trash-*"))


def test_weight_mismatch_lists_every_problem(tmp_path):
    path = _save(tmp_path, 1)
    other = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, bias=False))
    with pytest.raises(NanoGPTError) as e:
        ck.load_weights(other, ck.read_weights(path), str(path))
    msg = str(e.value)
    assert "missing transformer.h.1" in msg and "transformer.wte.weight: checkpoint (11, 8) vs model (11, 16)" in msg


def test_state_is_loaded_without_unpickling_objects(tmp_path):
    random.seed(3)
    torch.manual_seed(3)
    state = ck.rng_state()
    a = (random.random(), torch.rand(3))
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    ck.set_rng_state(torch.load(buf, weights_only=True))
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_config_json_contract(tmp_path):
    path = _save(tmp_path, 5)
    cfg = json.loads((path / "config.json").read_text())
    assert set(cfg) >= {"model", "train", "step", "best_val_loss", "tokenizer", "nanogpt_version"}
    assert GPTConfig.from_dict(cfg["model"]) == CFG


def test_unknown_spec_is_a_user_error(tmp_path):
    with pytest.raises(NanoGPTError, match="unknown model"):
        ck.load_model("definitely-not-a-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NanoGPTError, match="neither"):
        ck.load_model(str(tmp_path / "empty"))
