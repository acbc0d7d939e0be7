"""vLLM rollouts, colocated with training (one engine per rank, GPU only; optional extra).

Each rank runs its own engine through vLLM's external launcher, sleeps it during the update
passes to free GPU memory, and streams the trainer's weights into it after every step.
"""
from __future__ import annotations

import contextlib

from fastdapo.rollout.base import Generation, RolloutEngine, SamplingParams

INSTALL_HINT = ("rollout.engine=vllm needs vLLM, which runs on CUDA GPUs only: pip install 'fastdapo[gpu]' "
                "on a GPU machine, or use rollout.engine=hf")


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return vllm


def to_generations(outputs, prompts: list[list[int]], index_offset: int = 0) -> list[Generation]:
    """vLLM RequestOutputs (one per prompt, n completions each) -> our grouped Generations."""
    gens = []
    for i, (out, prompt) in enumerate(zip(outputs, prompts)):
        for c in out.outputs:
            gens.append(Generation(prompt_index=index_offset + i, prompt_ids=list(prompt), response_ids=list(c.token_ids),
                                   text=c.text, truncated=c.finish_reason == "length"))
    return gens


class VLLMEngine(RolloutEngine):
    def __init__(self, model_path: str, tokenizer, seed: int = 0, gpu_memory_utilization: float = 0.5,
                 tensor_parallel_size: int = 1, max_model_len: int | None = None, gather_context=None,
                 sleep_between_steps: bool = True):
        vllm = import_vllm()
        from fastdapo.runtime import distributed as D

        self.tokenizer = tokenizer
        self.gather_context = gather_context or contextlib.nullcontext
        self.sleep_between_steps = sleep_between_steps
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model_path, tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len, enable_sleep_mode=sleep_between_steps, dtype="bfloat16",
            distributed_executor_backend="external_launcher",
            seed=seed + D.rank() // tensor_parallel_size)  # ranks of one TP group must sample identically
        self._asleep = False

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 seeds: list[int] | None = None) -> list[Generation]:
        self._wake()
        base = dict(n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens)
        sps = ([self._vllm.SamplingParams(**base, seed=s) for s in seeds] if seeds is not None
               else self._vllm.SamplingParams(**base))
        requests = [{"prompt_token_ids": p} for p in prompts]
        outputs = self.llm.generate(requests, sps, use_tqdm=False)
        gens = to_generations(outputs, prompts)
        if self.sleep_between_steps:
            self.llm.sleep(level=1)  # free the KV cache and offload weights for the training passes
            self._asleep = True
        return gens

    def update_weights(self, model) -> None:
        self._wake()
        runner_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        with self.gather_context():
            for name, param in model.named_parameters():
                runner_model.load_weights([(name, param.data)])
        self.llm.reset_prefix_cache()
        if self.sleep_between_steps:
            self.llm.sleep(level=1)
            self._asleep = True
