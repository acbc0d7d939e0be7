"""Checkpoint files, damage detection, keep-last-k, RNG state, export, and non-finite step skipping."""

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fastdapo.actor.nonfinite import NonFiniteCounter
from fastdapo.checkpoint import store as C
from fastdapo.checkpoint.checkpointer import Checkpointer
from fastdapo.checkpoint.components import GlobalRNG, HFAssets, ShuffleRNG, capture_rng, restore_rng
from fastdapo.checkpoint.selection import choose_checkpoint

VOCAB = 48


# --- damage detection and pruning on hand-made checkpoint directories ----------------------------------


def fake_checkpoint(root: Path, step: int, world: int = 1) -> Path:
    d = root / C.step_dir_name(step)
    (d / "engine").mkdir(parents=True)
    (d / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 100)
    for r in range(world):
        (d / C.state_file(r)).write_bytes(b"s" * 10)
    files = {str(f.relative_to(d)): f.stat().st_size for f in d.rglob("*") if f.is_file()}
    (d / C.MANIFEST).write_text(json.dumps({"step": step, "world_size": world, "files": files}))
    return d


def test_complete_checkpoint_has_no_problem(tmp_path):
    assert C.problem(fake_checkpoint(tmp_path, 1)) is None


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: (d / C.MANIFEST).unlink(), "no manifest"),
        (lambda d: (d / C.MANIFEST).write_text("{not json"), "unreadable manifest"),
        (lambda d: (d / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 40), "truncated"),
        (lambda d: (d / C.state_file(0)).unlink(), "missing"),
    ],
)
def test_damaged_checkpoint_is_detected(tmp_path, damage, expected):
    d = fake_checkpoint(tmp_path, 3)
    damage(d)
    assert expected in C.problem(d)


def test_resolve_skips_a_truncated_checkpoint_for_the_previous_one(tmp_path, caplog):
    root = tmp_path / "run" / "checkpoints"
    fake_checkpoint(root, 2)
    newest = fake_checkpoint(root, 4)
    (newest / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"w" * 7)
    with caplog.at_level(logging.WARNING):
        assert C.resolve(tmp_path / "run") == root / C.step_dir_name(2)
    assert "skipping checkpoint" in caplog.text and "truncated" in caplog.text
    with pytest.raises(FileNotFoundError, match="unusable"):
        C.resolve(tmp_path / "run", step=4)  # asked for by step: no silent substitute
    with pytest.raises(FileNotFoundError, match="unusable"):
        C.resolve(newest)  # asked for by path: no silent substitute


def test_world_size_recorded_in_manifest_requires_every_rank_state(tmp_path):
    d = fake_checkpoint(tmp_path, 1, world=2)
    (d / C.state_file(1)).unlink()
    assert "missing" in C.problem(d)


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for s in (1, 2, 3, 4):
        fake_checkpoint(root, s)
    (root / C.step_dir_name(1) / C.MANIFEST).unlink()  # damaged and old: garbage
    ck = Checkpointer.__new__(Checkpointer)
    ck.root, ck.keep_last = root, 2
    ck.prune()
    assert [s for s, _ in C.list_checkpoints(root)] == [3, 4]


def test_resume_never_refuses_to_mix_with_an_earlier_run(tmp_path):
    fake_checkpoint(tmp_path / "checkpoints", 5)
    with pytest.raises(C.CheckpointError, match="--resume auto"):
        choose_checkpoint(tmp_path, "never", 1, 2)


# --- RNG state -------------------------------------------------------------------------------------------


def test_rng_state_roundtrips_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leave a cached Gaussian in NumPy's state
    torch.save({"rng": capture_rng()}, tmp_path / "s.pt")
    expected = (random.random(), float(np.random.randn()), torch.rand(3), torch.multinomial(torch.ones(10), 5))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    got = (random.random(), float(np.random.randn()), torch.rand(3), torch.multinomial(torch.ones(10), 5))
    assert got[:2] == expected[:2]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


# --- real DeepSpeed engines: save, export, reload --------------------------------------------------------


def _engine(stage: int, grad_clip: float = 1.0):
    from fastdapo.actor.ds_engine import build_ds_engine
    from fastdapo.actor.policy import LossSettings, PolicyWithLoss
    from fastdapo.config import load_config
    from fastdapo.runtime import distributed as D
    from fastdapo.toy.model import tiny_qwen2

    D.init_distributed(torch.device("cpu"), "gloo")
    cfg = load_config()
    cfg.distributed.zero_stage = stage
    cfg.optimizer.grad_clip = grad_clip
    cfg.optimizer.lr = 1e-2
    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=3)
    engine = build_ds_engine(PolicyWithLoss(model, LossSettings(impl="torch")), cfg, torch.float32, torch.device("cpu"))
    return cfg, model, engine


def _gathered(engine):
    import deepspeed

    return deepspeed.zero.GatheredParameters(
        list(engine.module.parameters()), enabled=engine.zero_optimization_stage() == 3
    )


def _train_step(engine, ids, scale: float = 1.0):
    loss = engine.module.model(input_ids=ids).logits.float().pow(2).mean() * scale
    engine.backward(loss)
    engine.step()


def _tokenizer():
    from fastdapo.toy.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.mark.parametrize("stage", [2, 3])
def test_export_gives_the_trained_logits(tmp_path, stage):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fastdapo.export import export_checkpoint

    cfg, model, engine = _engine(stage)
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        _train_step(engine, ids)
    with _gathered(engine), torch.no_grad():
        trained = model(input_ids=ids).logits.clone()
    ck = Checkpointer(tmp_path / "run", cfg, engine, {"rng": GlobalRNG()}, HFAssets(model.config, _tokenizer()))
    saved = ck.save(2)
    assert C.problem(saved) is None and C.read_manifest(saved)["zero_stage"] == stage

    export_checkpoint(tmp_path / "run", tmp_path / "hf")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.eos_token == "<eos>" and len(tok) == len(_tokenizer())
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, trained, rtol=0, atol=1e-6)


def test_resume_restores_engine_and_trainer_state(tmp_path):
    from fastdapo.data.prompt_stream import PromptStream
    from fastdapo.data.records import PromptRecord

    records = [PromptRecord(prompt=str(i), prompt_ids=[i], ground_truth="0") for i in range(7)]
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))

    def setup():
        cfg, model, engine = _engine(2)
        parts = {
            "stream": PromptStream(records, seed=0),
            "shuffle_rng": ShuffleRNG(random.Random(0)),
            "nonfinite": NonFiniteCounter(),
            "rng": GlobalRNG(),
        }
        return cfg, model, engine, Checkpointer(tmp_path, cfg, engine, parts, HFAssets(model.config, _tokenizer()))

    cfg, model, engine, ck = setup()
    _train_step(engine, ids)
    c = ck.components
    c["stream"].next(3)
    c["shuffle_rng"].rng.random()
    c["nonfinite"].in_a_row = 2
    ck.save(1)
    expected = (c["stream"].next(2), c["shuffle_rng"].rng.random(), torch.rand(2))
    _train_step(engine, ids)
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(123)
    cfg, model, engine, ck2 = setup()
    assert ck2.resume(choose_checkpoint(tmp_path, "auto", 1, 2)) == 1 and ck2.last_saved == 1
    c2 = ck2.components
    assert c2["nonfinite"].in_a_row == 2
    assert (c2["stream"].next(2), c2["shuffle_rng"].rng.random()) == expected[:2]
    assert torch.equal(torch.rand(2), expected[2])
    _train_step(engine, ids)  # the optimizer state came back too: the next step lands on the same weights
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_non_finite_gradients_skip_the_step(stage):
    """DeepSpeed skips overflowing steps under ZeRO-1/2/3; ZeRO-0 in fp32 does not by itself, the guard
    makes it. Either way the weights stay finite and unchanged, the scheduler waits, and the reported
    gradient norm is non-finite so the actor counts the skip."""
    cfg, model, engine = _engine(stage)
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    with _gathered(engine):
        before = {k: v.clone() for k, v in model.state_dict().items()}
    lr_steps = engine.lr_scheduler.last_epoch
    _train_step(engine, ids, scale=float("nan"))
    assert not np.isfinite(float(engine.get_global_grad_norm()))
    assert engine.skipped_steps == 1 and engine.lr_scheduler.last_epoch == lr_steps
    with _gathered(engine):
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k
    _train_step(engine, ids)  # and the next finite step trains normally
    gn = float(engine.get_global_grad_norm())
    assert np.isfinite(gn) and gn > 0
    with _gathered(engine):
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_zero0_guard_clips_like_zero2():
    """The guard takes over gradient clipping at ZeRO-0: the same step as DeepSpeed's ZeRO-2."""
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    out = {}
    for stage in (0, 2):
        _, model, engine = _engine(stage, grad_clip=0.05)
        _train_step(engine, ids)
        out[stage] = (float(engine.get_global_grad_norm()), {k: v.clone() for k, v in model.state_dict().items()})
    assert out[0][0] == pytest.approx(out[2][0], rel=1e-5) and out[0][0] > 0.05
    for k, v in out[0][1].items():
        torch.testing.assert_close(v, out[2][1][k], rtol=1e-5, atol=1e-6)


def test_large_exports_are_sharded_with_an_index(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from fastdapo import export
    from fastdapo.toy.model import tiny_qwen2

    model = tiny_qwen2(VOCAB, 32, 2, 4, seed=5)
    sd = export.hf_state_dict({"model." + k: v for k, v in model.state_dict().items()}, tie_word_embeddings=True)
    monkeypatch.setattr(export, "MAX_SHARD_BYTES", 8_000)
    model.config.save_pretrained(tmp_path)
    export._save_safetensors(sd, tmp_path, torch.float32)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_format_1_trainer_state_loads_into_the_components():
    """Checkpoints written before the components had their own entries still resume."""
    from fastdapo.checkpoint.checkpointer import _upgrade

    rng = random.Random(5)
    version, internal, gauss = rng.getstate()
    old = {
        "format": 1,
        "step": 3,
        "stream": {"epoch": 1, "position": 2},
        "rng": capture_rng(),
        "shuffle_rng": (version, list(internal), gauss),
        "nonfinite_in_a_row": 2,
    }
    parts = _upgrade(old)["components"]
    shuffle, counter = ShuffleRNG(random.Random(0)), NonFiniteCounter()
    shuffle.load_state_dict(parts["shuffle_rng"])
    counter.load_state_dict(parts["nonfinite"])
    assert shuffle.rng.random() == rng.random() and counter.in_a_row == 2 and parts["stream"] == old["stream"]
