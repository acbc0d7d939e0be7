"""Cross-field rules, checked at load so a bad combination fails before any model is loaded.

Each rule returns None or one line that starts with the key it blames (single-key ranges and choices
live in the field metadata of `config.schema`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from fastdapo.config.schema import Config
from fastdapo.toy.spec import MAX_POSITIONS, chain_positions, chain_space, num_problems, task_longest_prompt

Rule = Callable[[Config], Optional[str]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def uses_toy_model(cfg: Config) -> bool:
    return cfg.model.path == "toy"


def uses_toy_task(cfg: Config) -> bool:
    return not cfg.data.train_files


@rule
def model_path_given(c: Config):
    if not c.model.path.strip():
        return "model.path is required (a local Hugging Face model directory, or 'toy')"


@rule
def mini_batch_fits(c: Config):
    a = c.algorithm
    if a.mini_batch_size > a.train_batch_size:
        return f"algorithm.mini_batch_size: {a.mini_batch_size} exceeds algorithm.train_batch_size {a.train_batch_size}"


@rule
def gen_batch_covers_train_batch(c: Config):
    # Without dynamic sampling one round of train_batch_size prompts is generated; gen_batch_size is unused.
    a = c.algorithm
    if a.dynamic_sampling and a.gen_batch_size < a.train_batch_size:
        return (
            f"algorithm.gen_batch_size: {a.gen_batch_size} is below algorithm.train_batch_size "
            f"{a.train_batch_size} (dynamic sampling generates at least one full batch per round)"
        )


@rule
def overlong_buffer_fits(c: Config):
    a, r = c.algorithm, c.rollout
    if a.overlong_shaping and a.overlong_buffer_len >= r.max_response_length:
        return (
            f"algorithm.overlong_buffer_len: {a.overlong_buffer_len} must be below "
            f"rollout.max_response_length {r.max_response_length}"
        )


@rule
def torch_engine_holds_a_group(c: Config):
    r = c.rollout
    if r.engine != "torch":
        return None
    for key, n in (("rollout.n", r.n), ("rollout.eval_n", r.eval_n)):
        if r.batch_size < n:
            return f"rollout.batch_size: {r.batch_size} is below {key} {n} (the torch engine decodes whole groups)"


@rule
def async_generator_on_one_device(c: Config):
    r = c.rollout
    if r.max_staleness >= 1 and r.tensor_parallel_size > 1:
        return (
            f"rollout.tensor_parallel_size: {r.tensor_parallel_size} with rollout.max_staleness {r.max_staleness}: "
            "each rank's generator process runs on one device of its own; set rollout.tensor_parallel_size=1"
        )


@rule
def boxed_fallback_needs_dapo(c: Config):
    # math_verify has a box fallback of its own; the switch would silently do nothing there
    a = c.algorithm
    if a.reward_boxed_fallback and a.reward != "dapo":
        return f"algorithm.reward_boxed_fallback: applies to algorithm.reward dapo only, got {a.reward}"


@rule
def offload_needs_zero(c: Config):
    d = c.distributed
    if d.offload_params and d.zero_stage != 3:
        return f"distributed.offload_params: needs distributed.zero_stage 3, got {d.zero_stage}"
    if d.offload_optimizer and d.zero_stage < 1:
        return "distributed.offload_optimizer: needs distributed.zero_stage >= 1, got 0"


@rule
def toy_task_has_training_problems(c: Config):
    t = c.toy
    if not uses_toy_task(c):
        return None
    if t.task == "chain" and t.eval_size >= t.chain_problems:
        return f"toy.eval_size: {t.eval_size} leaves no training problems (toy.chain_problems {t.chain_problems})"
    if t.task == "arithmetic" and t.eval_size >= num_problems(t.max_operand):
        return (
            f"toy.eval_size: {t.eval_size} leaves no training problems "
            f"(toy.max_operand {t.max_operand} gives {num_problems(t.max_operand)})"
        )


@rule
def toy_chain_problems_exist(c: Config):
    t = c.toy
    if uses_toy_task(c) and t.task == "chain" and t.chain_problems > chain_space(t.chain_max_steps):
        return (
            f"toy.chain_problems: {t.chain_problems} exceeds the {chain_space(t.chain_max_steps)} distinct chains "
            f"of at most toy.chain_max_steps {t.chain_max_steps} steps"
        )


@rule
def toy_model_context(c: Config):
    t, r = c.toy, c.rollout
    prompt = task_longest_prompt(t.task, t.max_operand, t.chain_max_steps)
    if uses_toy_model(c) and uses_toy_task(c) and prompt + r.max_response_length > MAX_POSITIONS:
        return (
            f"rollout.max_response_length: {r.max_response_length} plus the longest toy prompt "
            f"({prompt}) exceeds the toy model's {MAX_POSITIONS} positions"
        )


@rule
def toy_chain_fits_context(c: Config):
    # the warm start trains on whole worked responses; one longer than the model's positions would crash it
    t = c.toy
    need = chain_positions(t.chain_max_steps)
    if uses_toy_model(c) and uses_toy_task(c) and t.task == "chain" and need > MAX_POSITIONS:
        most = max(k for k in range(t.chain_max_steps) if chain_positions(k) <= MAX_POSITIONS)
        return (
            f"toy.chain_max_steps: {t.chain_max_steps} needs {need} positions (prompt and worked response), "
            f"above the toy model's {MAX_POSITIONS}; at most {most} fit"
        )


@rule
def toy_heads_shape(c: Config):
    t = c.toy
    if not uses_toy_model(c):
        return None
    if t.hidden_size % (2 * t.heads):
        return (
            f"toy.hidden_size: {t.hidden_size} must be a multiple of 2 * toy.heads ({2 * t.heads}; "
            "even rotary head size)"
        )
    if t.heads % max(1, t.heads // 2):
        return f"toy.heads: {t.heads} must be 1, 3 or even (the toy model uses heads // 2 key/value heads)"


@rule
def lora_targets_given(c: Config):
    if c.model.lora.rank > 0 and not [m for m in c.model.lora.target_modules if m.strip()]:
        return "model.lora.target_modules: empty; name the modules to adapt, or all-linear"


@rule
def sequence_parallel_attention(c: Config):
    # Ulysses hands the attention the whole row's cut points; a [T, T] mask (sdpa, eager) cannot be split
    attn = c.model.attn_implementation
    if c.distributed.sequence_parallel_size > 1 and attn in ("sdpa", "eager"):
        return (
            f"distributed.sequence_parallel_size={c.distributed.sequence_parallel_size} needs "
            f"model.attn_implementation packed_sdpa, flash_attention_2 or auto, not {attn} (its [T, T] mask "
            "cannot be split over ranks)"
        )


def check_rules(cfg: Config) -> list[str]:
    """Every violated rule, in declaration order."""
    return [msg for msg in (r(cfg) for r in RULES) if msg]
