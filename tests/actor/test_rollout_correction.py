"""Rollout correction through the actor: the rollout_corr/* metrics see a mismatch (and only a mismatch), the
corrected gradient is the importance-weighted one, and with a matching engine a run is unchanged."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastdapo.actor.actor import Actor, UpdateStats
from fastdapo.actor.ds_engine import build_ds_engine
from fastdapo.actor.mismatch import MismatchStats
from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.algorithm.sequences import Sequence
from fastdapo.config import load_config
from fastdapo.packing.packer import build_packer
from fastdapo.runtime import distributed as D
from fastdapo.toy.model import tiny_qwen2

VOCAB, CAP = 48, 2.0


def make_sequences(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n):
        p_len, r_len = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(3, VOCAB, (p_len + r_len,), generator=g)
        mask = torch.zeros(p_len + r_len, dtype=torch.bool)
        mask[p_len - 1 : p_len + r_len - 1] = True
        adv = torch.full((p_len + r_len,), float(torch.randn(1, generator=g)))
        seqs.append(Sequence(ids, mask, advantages=adv))
    return seqs


def model_logprobs(model, s: Sequence, temperature: float, grad: bool = False) -> torch.Tensor:
    """Log-prob of each next token under softmax(logits / T), at the predicting position (0 at the end)."""
    with torch.set_grad_enabled(grad):
        logits = model(input_ids=s.input_ids[None], use_cache=False).logits[0, :-1].float() / temperature
        lp = torch.log_softmax(logits, -1).gather(1, s.input_ids[1:, None])[:, 0]
    return torch.cat([lp, lp.new_zeros(1)])


def build_actor(mode: str):
    D.init_distributed(torch.device("cpu"), "gloo")
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    cfg = load_config()
    cfg.distributed.zero_stage = 0
    settings = LossSettings(impl="torch", rollout_correction=mode, rollout_correction_cap=CAP)
    engine = build_ds_engine(PolicyWithLoss(model, settings), cfg, torch.float32, torch.device("cpu"))
    return model, Actor(engine, build_packer(64, model.config._attn_implementation, False), torch.device("cpu"))


def with_rollout_logprobs(model, seqs, temperature):
    for s in seqs:
        s.rollout_logprobs = model_logprobs(model, s, temperature) * s.loss_mask


def metrics_of(actor, seqs) -> dict:
    stats = UpdateStats(mismatch=MismatchStats(actor.policy.settings.rollout_correction, CAP))
    actor.accumulate_gradients(seqs, stats)
    return {k: v for k, v in stats.summary().items() if k.startswith("rollout_corr/")}


def test_matching_engine_gives_unit_weights_and_no_mismatch():
    model, actor = build_actor("tis")
    seqs = make_sequences()
    with_rollout_logprobs(model, seqs, 1.0)
    m = metrics_of(actor, seqs)
    assert m["rollout_corr/logp_abs_diff_max"] < 1e-4 and m["rollout_corr/kl"] < 1e-8
    assert m["rollout_corr/is_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    assert m["rollout_corr/ppl_ratio"] == pytest.approx(1.0, abs=1e-4) and m["rollout_corr/clip_frac"] == 0


@pytest.mark.parametrize("mode", ["none", "tis", "mis"])
def test_rollouts_at_another_temperature_are_detected(mode):
    model, actor = build_actor(mode)
    seqs = make_sequences()
    with_rollout_logprobs(model, seqs, 0.1)  # the engine sampled sharper than the trainer scores
    m = metrics_of(actor, seqs)
    # the same numbers by hand, over the loss tokens
    t = torch.cat([model_logprobs(model, s, 1.0)[s.loss_mask] for s in seqs])
    r = torch.cat([s.rollout_logprobs[s.loss_mask] for s in seqs])
    log_rho = t - r
    assert m["rollout_corr/logp_abs_diff_mean"] == pytest.approx(float(log_rho.abs().mean()), rel=1e-4)
    assert m["rollout_corr/logp_abs_diff_max"] == pytest.approx(float(log_rho.abs().max()), rel=1e-4)
    assert m["rollout_corr/kl"] == pytest.approx(float((log_rho.exp() - 1 - log_rho).mean()), rel=1e-4)
    assert m["rollout_corr/ppl_ratio"] == pytest.approx(math.exp(float(r.mean() - t.mean())), rel=1e-4)
    outside = (log_rho.abs() > math.log(CAP)) if mode == "mis" else (log_rho > math.log(CAP))
    assert m["rollout_corr/clip_frac"] == pytest.approx(float(outside.float().mean()), abs=1e-6)
    assert m["rollout_corr/logp_abs_diff_mean"] > 0.1 and m["rollout_corr/kl"] > 0.01
    rho = log_rho.exp()
    w = {"none": torch.ones_like(rho), "tis": rho.clamp(max=CAP), "mis": (~outside).float()}[mode]
    assert m["rollout_corr/is_weight_mean"] == pytest.approx(float(w.mean()), rel=1e-4)
    assert mode == "none" or m["rollout_corr/is_weight_mean"] != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("mode", ["tis", "mis"])
def test_corrected_gradient_is_the_importance_weighted_gradient(mode):
    model, actor = build_actor(mode)
    seqs = make_sequences(seed=1)
    with_rollout_logprobs(model, seqs, 0.1)
    actor.accumulate_gradients(seqs)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    # by hand on the model's own logits: on-policy the ratio is 1, so d(loss) = -(1/N) sum_t w_t A_t d logp_t
    ref_model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    n_tok = sum(int(s.loss_mask.sum()) for s in seqs)
    total, weights = 0.0, []
    for s in seqs:
        lp = model_logprobs(ref_model, s, 1.0, grad=True)
        rho = (lp.detach() - s.rollout_logprobs).exp()
        w = rho.clamp(max=CAP) if mode == "tis" else ((rho >= 1 / CAP) & (rho <= CAP)).float()
        weights.append(w[s.loss_mask])
        total = total - (s.loss_mask * w * s.advantages * lp).sum() / n_tok
    total.backward()
    w = torch.cat(weights)
    assert (w < 0.999).any() and ((w > 1.001).any() if mode == "tis" else (w == 0).any())  # weights really vary
    for n, p in ref_model.named_parameters():
        if p.grad is not None and p.grad.abs().max() > 0:
            torch.testing.assert_close(got[n], p.grad, rtol=2e-4, atol=2e-6, msg=n)
    unweighted = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    plain = -sum((s.loss_mask * s.advantages * model_logprobs(unweighted, s, 1.0, grad=True)).sum() for s in seqs)
    (plain / n_tok).backward()
    flat = torch.cat([got[n].reshape(-1) for n, p in unweighted.named_parameters() if p.grad is not None])
    flat_plain = torch.cat([p.grad.reshape(-1) for p in unweighted.parameters() if p.grad is not None])
    assert not torch.allclose(flat, flat_plain, rtol=1e-2, atol=1e-4)  # the weights did something


def test_correction_without_engine_logprobs_is_one_line_error():
    _, actor = build_actor("tis")
    with pytest.raises(ValueError, match="algorithm.rollout_correction=tis needs"):
        actor.accumulate_gradients(make_sequences(n=2))


# ---------------------------------------------------------------------------------------------------------
# a short toy run with the matching torch engine: tis changes nothing

_DIST_VARS = {"MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"}


def toy_run(run_dir: Path, cache: Path, mode: str) -> list[dict]:
    sets = {
        "toy.sft_steps": 20,
        "toy.hidden_size": 32,
        "toy.cache_dir": cache,
        "toy.eval_size": 2,
        "rollout.eval_n": 2,
        "rollout.n": 8,
        "rollout.max_response_length": 16,
        "algorithm.overlong_buffer_len": 2,
        "algorithm.train_batch_size": 2,
        "algorithm.gen_batch_size": 2,
        "algorithm.mini_batch_size": 1,
        "algorithm.dynamic_sampling": "false",
        "algorithm.rollout_correction": mode,
        "run.steps": 2,
        "run.save_every": 0,
        "run.progress": "false",
        "run.output_dir": run_dir,
    }
    env = {
        **{k: v for k, v in os.environ.items() if k not in _DIST_VARS},
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run(
        [sys.executable, "-m", "fastdapo.cli", "train", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def final_weights(run_dir: Path) -> dict:
    (path,) = sorted(run_dir.rglob("mp_rank_00_model_states.pt"))[-1:]
    return torch.load(path, map_location="cpu", weights_only=False)["module"]


def test_matching_engine_run_is_unchanged_by_tis(tmp_path):
    cache = tmp_path / "cache"
    plain = toy_run(tmp_path / "none", cache, "none")
    tis = toy_run(tmp_path / "tis", cache, "tis")
    assert len(tis) == 2
    for m in tis:
        assert m["rollout_corr/logp_abs_diff_max"] < 1e-4 and m["rollout_corr/clip_frac"] == 0
        assert m["rollout_corr/is_weight_mean"] == pytest.approx(1.0, abs=1e-5)
    assert [m["reward/mean"] for m in tis] == [m["reward/mean"] for m in plain]  # same rollouts
    a, b = final_weights(tmp_path / "none"), final_weights(tmp_path / "tis")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
