"""Every invalid value fails at load with one line that names the key."""

import json

import pytest

from fastdapo.config import ConfigError, load_config
from fastdapo.config.rules import RULES

# override(s) -> start of the one-line error
BAD = [
    (
        ["distributed.sequence_parallel_size=2", "model.attn_implementation=sdpa"],
        "distributed.sequence_parallel_size=2 needs model.attn_implementation packed_sdpa, flash_attention_2 or auto",
    ),
    (["algorithm.eps_hgh=0.3"], "unknown key 'algorithm.eps_hgh' (did you mean 'algorithm.eps_high'?)"),
    (["algorithmm.eps_high=0.3"], "unknown key 'algorithmm'"),
    (["model.toy_layers=3"], "unknown key 'model.toy_layers'"),
    (["algorithm.eps_low=1.0"], "algorithm.eps_low: 1.0 is out of range; allowed [0, 1)"),
    (["algorithm.eps_low=-0.1"], "algorithm.eps_low: -0.1 is out of range"),
    (["algorithm.eps_high=-0.1"], "algorithm.eps_high: -0.1 is out of range"),
    (["algorithm.dual_clip=1.0"], "algorithm.dual_clip: 1.0 is out of range; allowed (1, inf]"),
    (["algorithm.log_ratio_bound=0"], "algorithm.log_ratio_bound: 0.0 is out of range"),
    (["algorithm.reward=exact"], "algorithm.reward: 'exact' is not allowed; choose one of dapo, math_verify"),
    (
        ["algorithm.reward=math_verify", "algorithm.reward_boxed_fallback=true"],
        "algorithm.reward_boxed_fallback: applies to algorithm.reward dapo only, got math_verify",
    ),
    (["algorithm.reward_boxed_fallback=maybe"], "algorithm.reward_boxed_fallback: expected true or false"),
    (["rollout.temperature=0"], "rollout.temperature: 0.0 is out of range; allowed (0, 10]"),
    (["rollout.eval_temperature=0"], "rollout.eval_temperature: 0.0 is out of range"),
    (["rollout.top_p=0"], "rollout.top_p: 0.0 is out of range; allowed (0, 1]"),
    (["rollout.eval_top_p=1.5"], "rollout.eval_top_p: 1.5 is out of range"),
    (["rollout.n=1"], "rollout.n: 1 is out of range; allowed [2, 1024]"),
    (["rollout.engine=sglang"], "rollout.engine: 'sglang' is not allowed; choose one of torch, hf, vllm"),
    (["optimizer.lr=0"], "optimizer.lr: 0.0 is out of range"),
    (["optimizer.beta2=1"], "optimizer.beta2: 1.0 is out of range; allowed [0, 1)"),
    (["run.steps=many"], "run.steps: expected an integer"),
    (["run.keep_last=0"], "run.keep_last: 0 is out of range"),
    (["algorithm.dynamic_sampling=3"], "algorithm.dynamic_sampling: expected true or false"),
    (["model.path="], "model.path is required"),
    (["algorithm.mini_batch_size=64"], "algorithm.mini_batch_size: 64 exceeds algorithm.train_batch_size 32"),
    (["algorithm.gen_batch_size=16"], "algorithm.gen_batch_size: 16 is below algorithm.train_batch_size 32"),
    (
        ["algorithm.overlong_buffer_len=24"],
        "algorithm.overlong_buffer_len: 24 must be below rollout.max_response_length",
    ),
    (["rollout.batch_size=4"], "rollout.batch_size: 4 is below rollout.n 8"),
    (["rollout.batch_size=8", "rollout.eval_n=16"], "rollout.batch_size: 8 is below rollout.eval_n 16"),
    (
        ["rollout.max_staleness=1", "rollout.tensor_parallel_size=2"],
        "rollout.tensor_parallel_size: 2 with rollout.max_staleness 1: each rank's generator process runs on one",
    ),
    (["distributed.offload_params=true"], "distributed.offload_params: needs distributed.zero_stage 3"),
    (["distributed.zero_stage=0", "distributed.offload_optimizer=true"], "distributed.offload_optimizer: needs"),
    (["toy.eval_size=882"], "toy.eval_size: 882 leaves no training problems"),
    (["toy.task=chain", "toy.eval_size=2048"], "toy.eval_size: 2048 leaves no training problems (toy.chain_problems"),
    (["toy.task=sorting"], "toy.task: 'sorting' is not allowed; choose one of arithmetic, chain"),
    (["toy.task=chain", "toy.chain_max_steps=45"], "toy.chain_max_steps: 45 is out of range; allowed [2, 44]"),
    (
        ["toy.task=chain", "toy.chain_max_steps=2"],
        "toy.chain_problems: 2048 exceeds the 1264 distinct chains of at most toy.chain_max_steps 2 steps",
    ),
    (
        ["toy.task=chain", "toy.chain_max_steps=40"],
        "toy.chain_max_steps: 40 needs 546 positions (prompt and worked response), above the toy model's 512",
    ),
    (
        ["toy.task=chain", "rollout.max_response_length=470", "algorithm.overlong_buffer_len=8"],
        "rollout.max_response_length: 470 plus the longest toy prompt (57)",
    ),
    (["rollout.max_response_length=500", "algorithm.overlong_buffer_len=8"], "rollout.max_response_length: 500 plus"),
    (["toy.hidden_size=100", "toy.heads=4"], "toy.hidden_size: 100 must be a multiple of 2 * toy.heads"),
    (["toy.hidden_size=160", "toy.heads=5"], "toy.heads: 5 must be 1, 3 or even"),
    (["model.lora.rnk=4"], "unknown key 'model.lora.rnk' (did you mean 'model.lora.rank'?)"),
    (["model.lora.rank=-1"], "model.lora.rank: -1 is out of range; allowed [0, 4096]"),
    (["model.lora.alpha=0"], "model.lora.alpha: 0.0 is out of range; allowed (0, inf]"),
    (["model.lora.dropout=1"], "model.lora.dropout: 1.0 is out of range; allowed [0, 1)"),
    (["model.lora.rank=8", "model.lora.target_modules=[]"], "model.lora.target_modules: empty"),
]


@pytest.mark.parametrize("overrides, start", BAD, ids=[b[0][-1] for b in BAD])
def test_bad_value_fails_at_load_naming_the_key(overrides, start):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    msg = str(e.value)
    assert msg.startswith(start) and "\n" not in msg


def test_rules_hold_without_dynamic_sampling():
    # gen_batch_size is unused when each round is one train batch
    cfg = load_config(None, ["algorithm.dynamic_sampling=false", "algorithm.gen_batch_size=1"])
    assert cfg.algorithm.gen_batch_size == 1


def test_boxed_fallback_loads_with_the_dapo_reward():
    cfg = load_config(None, ["algorithm.reward_boxed_fallback=true"])
    assert cfg.algorithm.reward == "dapo" and cfg.algorithm.reward_boxed_fallback is True


def test_toy_rules_do_not_apply_to_a_real_model():
    cfg = load_config(
        None,
        [
            "model.path=/models/x",
            "toy.hidden_size=100",
            "data.train_files=[a.parquet]",
            "rollout.max_response_length=4096",
            "algorithm.overlong_buffer_len=512",
            "toy.task=chain",
            "toy.chain_max_steps=40",
            "toy.chain_problems=100000",
        ],
    )
    assert cfg.toy.hidden_size == 100 and cfg.toy.chain_max_steps == 40


def test_every_rule_is_reached_by_the_table():
    # a rule nobody can trigger from a config is dead; one the table misses is untested
    messages = " ".join(b[1] for b in BAD)
    keys = {
        "model_path_given": "model.path",
        "mini_batch_fits": "algorithm.mini_batch_size",
        "gen_batch_covers_train_batch": "algorithm.gen_batch_size",
        "overlong_buffer_fits": "overlong_buffer_len",
        "torch_engine_holds_a_group": "rollout.batch_size",
        "async_generator_on_one_device": "rollout.tensor_parallel_size",
        "offload_needs_zero": "distributed.offload",
        "boxed_fallback_needs_dapo": "algorithm.reward_boxed_fallback",
        "toy_task_has_training_problems": "toy.eval_size",
        "toy_chain_problems_exist": "toy.chain_problems",
        "toy_model_context": "rollout.max_response_length",
        "toy_chain_fits_context": "toy.chain_max_steps",
        "toy_heads_shape": "toy.heads",
        "lora_targets_given": "model.lora.target_modules",
        "sequence_parallel_attention": "distributed.sequence_parallel_size",
    }
    assert {r.__name__ for r in RULES} == set(keys)
    assert all(k in messages for k in keys.values())


def test_preflight_checks_files_and_packages(tmp_path):
    missing = tmp_path / "missing.parquet"
    with pytest.raises(ConfigError, match=f"^data.train_files: {missing} does not exist$"):
        load_config(None, [f"data.train_files=[{missing}]"], preflight=True)
    with pytest.raises(ConfigError, match="^model.path: .* is not a Hugging Face model directory"):
        load_config(None, [f"model.path={tmp_path}"], preflight=True)
    with pytest.raises(ConfigError, match="^run.resume: .*nowhere does not exist"):
        load_config(None, [f"run.resume={tmp_path / 'nowhere'}"], preflight=True)
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert load_config(None, [f"model.path={tmp_path}"], preflight=True).model.path == str(tmp_path)
    # the same config validates without preflight (a cluster config checked on another machine)
    assert load_config(None, [f"data.train_files=[{missing}]"]).data.train_files == [str(missing)]
