"""Rollout + reward for one generation round: prompts -> scored groups."""

from __future__ import annotations

from fastdapo.algorithm.dynamic_sampling import Group
from fastdapo.algorithm.overlong import overlong_penalty
from fastdapo.config.schema import Config
from fastdapo.data.records import PromptRecord
from fastdapo.rewards import score_batch
from fastdapo.rollout.base import RolloutEngine, SamplingParams
from fastdapo.rollout.registry import build_engine


def build_rollout_engine(cfg: Config, ws, ds_engine) -> RolloutEngine:
    """The configured engine; torch / hf share the actor's weights (gathered under ZeRO-3), vLLM gets copies
    in the actor's dtype (so its log-probs match) and streams updates gathered piece by piece."""
    r = cfg.rollout
    if r.engine in ("torch", "hf"):
        from fastdapo.actor.zero3 import gathered_for_generation

        return build_engine(
            r.engine,
            model=ws.model,
            tokenizer=ws.tokenizer,
            batch_size=r.batch_size,
            gather_context=lambda: gathered_for_generation(ds_engine),
        )
    # The context vLLM reserves: the longest prompt actually loaded (longer ones were dropped) + a response.
    longest = max((len(p.prompt_ids) for p in [*ws.train, *ws.eval]), default=cfg.data.max_prompt_length)
    return build_engine(
        r.engine,
        model_path=ws.model_dir,
        tokenizer=ws.tokenizer,
        seed=cfg.run.seed,
        gpu_memory_utilization=r.gpu_memory_utilization,
        tensor_parallel_size=r.tensor_parallel_size,
        max_prompt_length=longest,
        max_response_length=r.max_response_length,
        dtype=str(ws.model.dtype).removeprefix("torch."),
    )


def sampling_params(cfg: Config, evaluation: bool = False) -> SamplingParams:
    r = cfg.rollout
    if evaluation:
        return SamplingParams(
            n=r.eval_n, temperature=r.eval_temperature, top_p=r.eval_top_p, max_new_tokens=r.max_response_length
        )
    return SamplingParams(n=r.n, temperature=r.temperature, top_p=r.top_p, max_new_tokens=r.max_response_length)


def prompt_seeds(prompts: list[PromptRecord], cfg: Config) -> list[int] | None:
    return [cfg.run.seed * 1_000_003 + p.uid for p in prompts] if cfg.rollout.seed_per_prompt else None


def generate_and_score(engine: RolloutEngine, prompts: list[PromptRecord], cfg: Config, timer) -> list[Group]:
    params = sampling_params(cfg)
    with timer("rollout"):
        gens = engine.generate([p.prompt_ids for p in prompts], params, seeds=prompt_seeds(prompts, cfg))
    return score_groups(prompts, gens, cfg, timer)


def score_groups(prompts: list[PromptRecord], gens: list, cfg: Config, timer) -> list[Group]:
    """Rewards (with overlong shaping) for ``rollout.n`` generations per prompt, in prompt order."""
    params = sampling_params(cfg)
    a = cfg.algorithm
    with timer("reward"):
        results = score_batch(
            [g.text for g in gens],
            [prompts[g.prompt_index].ground_truth for g in gens],
            reward=a.reward,
            num_workers=a.reward_workers or None,
            timeout_s=a.reward_timeout_s,
            reward_boxed_fallback=a.reward_boxed_fallback,
        )
    groups = []
    for i, prompt in enumerate(prompts):
        chunk = slice(i * params.n, (i + 1) * params.n)
        g_gens, g_res = gens[chunk], results[chunk]
        scores = []
        for g, res in zip(g_gens, g_res):
            s = res.score
            if a.overlong_shaping:
                s += overlong_penalty(
                    len(g.response_ids),
                    cfg.rollout.max_response_length,
                    a.overlong_buffer_len,
                    a.overlong_penalty_factor,
                )
            scores.append(s)
        groups.append(Group(prompt=prompt, generations=g_gens, scores=scores, accs=[r.acc for r in g_res]))
    return groups


def evaluate_accuracy(engine: RolloutEngine, records: list[PromptRecord], cfg: Config) -> float:
    """Mean sampled accuracy (avg@eval_n) on this rank's share of the eval prompts, reduced over ranks."""
    from fastdapo.runtime import distributed as D

    mine = records[D.rank() :: D.world_size()]
    params = sampling_params(cfg, evaluation=True)
    gens = engine.generate([p.prompt_ids for p in mine], params) if mine else []
    res = score_batch(
        [g.text for g in gens],
        [mine[g.prompt_index].ground_truth for g in gens],
        reward=cfg.algorithm.reward,
        num_workers=cfg.algorithm.reward_workers or None,
        timeout_s=cfg.algorithm.reward_timeout_s,
        reward_boxed_fallback=cfg.algorithm.reward_boxed_fallback,
    )
    correct, total = D.all_reduce([sum(r.acc for r in res), len(res)])
    return correct / max(total, 1)
