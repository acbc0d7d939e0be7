"""TRL side of the end-to-end benchmark: ``GRPOTrainer`` with ``loss_type="dapo"`` on the shared spec.

Started in its own process by ``fastdapo_bench.e2e``: ``python -m fastdapo_bench.e2e_trl SPEC.json RESULT.json``.
Per-step wall time is taken by a callback between ``on_step_begin`` and ``on_step_end`` (generation,
reward, advantages, forward/backward and the optimizer step; TRL's logging comes after and is not
counted). Generation + reward is also timed on its own by wrapping the trainer's batch builder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fastdapo_bench.e2e import apply_threads, read_spec, toy_prompt_rows, write_result


def grpo_config_kwargs(spec: dict, output_dir: str) -> dict:
    """GRPOConfig options matching the spec: one generation and one optimizer update per step."""
    per_step = spec["prompts"] * spec["group_size"]  # completions per step
    return dict(
        output_dir=output_dir,
        loss_type="dapo",
        num_generations=spec["group_size"],
        max_completion_length=spec["max_new_tokens"],
        # All of a step's completions form one micro-batch; generation batch = train batch -> one
        # generation per optimizer step (steps_per_generation = 1), no gradient accumulation.
        per_device_train_batch_size=per_step,
        gradient_accumulation_steps=1,
        generation_batch_size=per_step,
        num_iterations=1,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=0.28,
        scale_rewards="group",
        mask_truncated_completions=False,
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.1,
        max_grad_norm=1.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,  # GRPOConfig turns it on by default; fastdapo's toy run has it off
        shuffle_dataset=False,  # both sides take the prompts in the same order
        max_steps=spec["steps"],
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
        seed=spec["seed"],
    )


def build_grpo_config(spec: dict, output_dir: str):
    import dataclasses

    from trl import GRPOConfig

    kwargs = grpo_config_kwargs(spec, output_dir)
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(GRPOConfig)}:  # transformers >= 5 name
        kwargs["activation_checkpointing"] = kwargs["gradient_checkpointing"]
    return GRPOConfig(**kwargs)


def dapo_reward(prompts, completions, ground_truth, **_):
    from fastdapo.rewards import dapo_math_reward

    return [dapo_math_reward(c, gt).score for c, gt in zip(completions, ground_truth)]


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.tokens: list[int] = []
            self._t0 = 0.0
            self._seen = 0

        def on_step_begin(self, args, state, control, **kw):
            self._seen = state.num_input_tokens_seen
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t0)
            self.tokens.append(int(state.num_input_tokens_seen - self._seen))

    return StepTimer()


def run(spec: dict) -> dict:
    apply_threads(spec["threads"])
    import torch
    from datasets import Dataset
    from trl import GRPOTrainer

    from fastdapo.models import load_model_and_tokenizer

    torch.manual_seed(spec["seed"])
    model, tokenizer = load_model_and_tokenizer(spec["model_dir"])
    dataset = Dataset.from_list(toy_prompt_rows(spec, tokenizer))
    work = Path(spec["work_dir"]) / "trl"
    timer = _step_timer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=dapo_reward,
        args=build_grpo_config(spec, str(work)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    rollout_times: list[float] = []
    generate = trainer._generate_and_score_completions

    def timed_generate(*a, **kw):  # generation + decoding + reward + advantages
        t0 = time.perf_counter()
        out = generate(*a, **kw)
        rollout_times.append(time.perf_counter() - t0)
        return out

    trainer._generate_and_score_completions = timed_generate
    trainer.train()
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    steps = []
    for i, dt in enumerate(timer.times):
        h = logs[i] if i < len(logs) else {}
        rollout = rollout_times[i] if i < len(rollout_times) else None
        steps.append(
            {
                "step": i + 1,
                "time/step": dt,
                "time/rollout": rollout,
                "tokens": timer.tokens[i],
                "response_length/mean": h.get("completions/mean_length"),
                "reward/mean": h.get("reward"),
            }
        )
    return {
        "framework": "trl",
        "steps": steps,
        "threads": torch.get_num_threads(),
        "checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
        "versions": {"trl": __import__("trl").__version__, "transformers": __import__("transformers").__version__},
    }


def main(argv: list[str]) -> None:
    spec_path, result_path = argv
    write_result(result_path, run(read_spec(spec_path)))


if __name__ == "__main__":
    main(sys.argv[1:])
