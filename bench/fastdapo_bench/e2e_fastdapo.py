"""fastdapo side of the end-to-end benchmark: ``fastdapo.training.trainer.train`` on the shared spec.

Started in its own process by ``fastdapo_bench.e2e``: ``python -m fastdapo_bench.e2e_fastdapo SPEC.json RESULT.json``.
Step times are the trainer's own ``time/step`` (rollout, reward, old log-probs, update, weight sync;
evaluation, metrics and checkpoints are outside it), read back from RUN_DIR/metrics.jsonl.

With ``max_staleness`` >= 1 in the spec (asynchronous rollouts) the thread budget ``threads`` is split:
``generator_threads`` for the generator process (``rollout.generator_threads``) and ``trainer_threads`` for
the trainer. The trainer would size its own share from the machine's core count; the benchmark fixes it to
the budget instead, so that the run uses ``threads`` threads in all on any machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastdapo_bench.e2e import apply_threads, read_spec, write_result

STAGES = ("time/rollout", "time/reward", "time/old_logprobs", "time/train")
ASYNC = (
    "async/generate_s",
    "async/actor_wait_s",
    "async/generator_wait_s",
    "async/weight_transfer_s",
    "async/staleness_mean",
    "async/dropped_stale",
)


def fastdapo_overrides(spec: dict, run_dir: str) -> list[str]:
    """``load_config(None, overrides)`` settings matching the spec: dynamic sampling off (TRL has
    none), one mini-batch = the whole step -> one optimizer update per step, no overlong shaping
    (TRL gets the bare correctness reward), constant learning rate, small evaluation."""
    p, g = spec["prompts"], spec["group_size"]
    sets = {
        "model.path": spec["model_dir"],
        "toy.eval_size": spec["eval_size"],
        "toy.max_operand": spec["max_operand"],
        "data.shuffle": False,  # prompts in list order, as TRL with shuffle_dataset=False
        "rollout.n": g,
        "rollout.max_response_length": spec["max_new_tokens"],
        "rollout.temperature": 1.0,
        "rollout.top_p": 1.0,
        "rollout.batch_size": max(512, p * g),
        "rollout.eval_n": 1,
        "algorithm.train_batch_size": p,
        "algorithm.gen_batch_size": p,
        "algorithm.mini_batch_size": p,
        "algorithm.dynamic_sampling": False,
        "algorithm.ppo_epochs": 1,
        "algorithm.eps_low": 0.2,
        "algorithm.eps_high": 0.28,
        "algorithm.overlong_shaping": False,
        "algorithm.overlong_filtering": False,
        "optimizer.lr": spec["lr"],
        "optimizer.warmup_steps": 0,
        "optimizer.weight_decay": 0.1,
        "optimizer.grad_clip": 1.0,
        "run.steps": spec["steps"],
        "run.seed": spec["seed"],
        "run.device": "cpu",
        "run.output_dir": run_dir,
        "run.save_every": 0,
        "run.progress": False,
        "run.resume": "never",
        "run.log_samples_every": 0,
        "run.eval_every": 0,
    }
    sets = [f"{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in sets.items()]
    return sets + list(spec.get("extra_sets", []))


def run(spec: dict) -> dict:
    apply_threads(spec["threads"])
    import torch

    from fastdapo.config import load_config
    from fastdapo.training.trainer import train

    staleness = spec.get("max_staleness", 0)
    if staleness:
        from fastdapo.training import async_rollout

        split = (spec["trainer_threads"], spec["generator_threads"])
        async_rollout.thread_split = lambda cfg: split  # (trainer, generator) out of the budget, not the machine

    run_dir = Path(spec["work_dir"]) / spec.get("run_name", "fastdapo")
    cfg = load_config(None, fastdapo_overrides(spec, str(run_dir)))
    assert cfg.rollout.max_staleness == staleness, "the spec's max_staleness reaches the config"
    train(cfg)
    trainer_threads = torch.get_num_threads()  # an asynchronous run has set its own share
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = []
    for r in rows:
        if r.get("step", 0) < 1 or "time/step" not in r:
            continue  # the step-0 evaluation line
        tokens = r["throughput/tokens_per_s"] * r["time/step"]
        wait = r.get("time/rollout", 0.0)  # sync: generation; async: the actor's wait for the generator
        gen = r["async/generate_s"] if staleness else wait
        steps.append(
            {
                "step": r["step"],
                "time/step": r["time/step"],
                "time/rollout": wait + r.get("time/reward", 0.0),
                "gen_s": gen,  # generating the step's samples (async: in the generator, while the actor worked)
                "actor_s": r["time/step"] - wait,  # the actor's own work in the step
                "tokens": round(tokens),
                "response_length/mean": r.get("response_length/mean"),
                "reward/mean": r.get("reward/mean"),
                **{k: r.get(k) for k in STAGES},
                **({k: r.get(k) for k in ASYNC} if staleness else {}),
            }
        )
    return {
        "framework": "fastdapo",
        "steps": steps,
        "max_staleness": staleness,
        **(
            {
                "threads": trainer_threads + spec["generator_threads"],
                "trainer_threads": trainer_threads,
                "generator_threads": cfg.rollout.generator_threads,
            }
            if staleness
            else {"threads": trainer_threads}
        ),
        "versions": {
            "deepspeed": __import__("deepspeed").__version__,
            "zero_stage": cfg.distributed.zero_stage,
            "kernel_impl": cfg.algorithm.kernel_impl,
        },
    }


def main(argv: list[str]) -> None:
    spec_path, result_path = argv
    write_result(result_path, run(read_spec(spec_path)))


if __name__ == "__main__":
    main(sys.argv[1:])
