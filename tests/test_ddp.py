"""DDP through torchrun on CPU (gloo): 2 processes must match 1 process with the same global batch.

Rank r reads stream micro-batches k*W + r (the loader's DDP guarantee), gradients are averaged
across ranks on the last micro-step only (no_sync before), so with gradient_accumulation_steps=4
a 2-process run (2 micro-steps each) and a 1-process run (4 micro-steps) take the same steps,
up to float32 summation order.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from test_train import _args, data_dir, metrics, tiny, weights  # noqa: F401  (fixture)
from nanogpt.train import train


@pytest.mark.slow
def test_two_processes_match_one(data_dir, tmp_path):  # noqa: F811
    over = dict(gradient_accumulation_steps=4, dropout=0.0, max_iters=4, eval_interval=2)
    one, two = tmp_path / "one", tmp_path / "two"
    train(tiny(data_dir, one, **over))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "nanogpt", "train", *_args(data_dir, two, **over)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[:3000]
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    la, lb = [m["loss"] for m in metrics(one)], [m["loss"] for m in metrics(two)]
    assert len(la) == len(lb) == 4 and lb == pytest.approx(la, rel=1e-5)
    ga, gb = [m["grad_norm"] for m in metrics(one)], [m["grad_norm"] for m in metrics(two)]
    assert gb == pytest.approx(ga, rel=1e-4)
    va = [m["val_loss"] for m in metrics(one, "eval")]
    assert [m["val_loss"] for m in metrics(two, "eval")] == pytest.approx(va, rel=1e-5)
    # Only rank 0 wrote: one metrics file, one line per step, checkpoints from one writer.
    assert [m["step"] for m in metrics(two)] == [1, 2, 3, 4]
    assert sorted(p.name for p in two.glob("ckpt-*")) == ["ckpt-00000002", "ckpt-00000004"]
