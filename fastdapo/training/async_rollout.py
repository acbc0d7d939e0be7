"""Asynchronous rollouts (``rollout.max_staleness`` = k >= 1): a generator process samples while the actor trains.

The trainer draws prompts from its stream and keeps k requests in flight at the generator; each finished
request comes back tagged with the policy version (updates applied) of the weights that generated it.
Training takes requests in order: ``next_prompts`` waits for the oldest, ``rollout`` scores it (reward, overlong
shaping) and drops it whole, counted, if its version is more than k updates behind the weights being
trained. After every update ``push`` sends the new weights, which the generator swaps in between requests.
Dynamic sampling works on this stream of finished groups exactly as on synchronous rounds.

The stream position saved in a checkpoint is that of the oldest request not yet trained on, so a resumed run
regenerates the requests that were in flight and neither loses nor repeats a prompt.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from fastdapo.config.schema import Config
from fastdapo.data.prompt_stream import PromptStream
from fastdapo.data.records import PromptRecord
from fastdapo.rollout.generator_layout import Placement, generator_placement, node_gpus
from fastdapo.rollout.generator_process import GeneratorError, GeneratorProcess, GeneratorSpec, Request, Result
from fastdapo.rollout.weight_stream import named_weights
from fastdapo.rollout.weight_transfer import BUCKET_BYTES, WeightSender, layout_of
from fastdapo.runtime import distributed as D
from fastdapo.training.rollout_stage import prompt_seeds, sampling_params, score_groups

log = logging.getLogger(__name__)


class StreamPosition:
    """The prompt stream as a checkpoint component: its state before the oldest request in flight."""

    def __init__(self, stream: PromptStream):
        self.stream = stream
        self.in_flight: deque = deque()  # (request id, stream state before drawing its prompts, prompts)

    def state_dict(self) -> dict:
        return dict(self.in_flight[0][1]) if self.in_flight else self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


@dataclass
class StepStats:
    staleness: list[int] = field(default_factory=list)  # per consumed request
    dropped: int = 0  # groups dropped as too stale
    actor_wait_s: float = 0.0
    generator_wait_s: float = 0.0
    transfer_s: float = 0.0
    generate_s: float = 0.0  # the generator's own generation time for the consumed requests

    def summary(self) -> dict:
        n, total, dropped, actor, gen, transfer, generate = D.all_reduce(
            [len(self.staleness), sum(self.staleness), self.dropped, self.actor_wait_s, self.generator_wait_s,
             self.transfer_s, self.generate_s]
        )  # fmt: skip
        worst = D.all_reduce([max(self.staleness, default=0)], "max")[0]
        w = D.world_size()
        return {
            "async/staleness_mean": total / n if n else 0.0,
            "async/staleness_max": worst,
            "async/dropped_stale": dropped,
            "async/actor_wait_s": actor / w,  # means over ranks
            "async/generator_wait_s": gen / w,
            "async/weight_transfer_s": transfer / w,
            "async/generate_s": generate / w,
        }


def thread_split(cfg: Config) -> tuple[int, int]:
    """(trainer threads, generator threads) out of this process's share of the cores it may run on (its CPU
    affinity, as a scheduler or taskset grants it), shared with the node's other ranks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    per_rank = max(1, cores // D.local_world_size())
    gen = cfg.rollout.generator_threads or max(1, per_rank // 2)
    return max(1, per_rank - gen), gen


class AsyncRollout:
    def __init__(self, cfg: Config, ws, position: StreamPosition, model: torch.nn.Module, weights=None):
        device = next(model.parameters()).device
        placement = generator_placement_here(device)
        self.cfg, self.k, self.position = cfg, cfg.rollout.max_staleness, position
        self.model, self.weights = model, weights or named_weights
        self.version = 0  # updates applied to the weights being trained
        self.stats = StepStats()
        self.ready: dict[int, Result] = {}  # results received ahead of the one asked for
        self._next_id = 0
        self._current: tuple[list[PromptRecord], Result] | None = None
        trainer_threads, gen_threads = thread_split(cfg)
        torch.set_num_threads(trainer_threads)
        layout = layout_of(self.weights(model, BUCKET_BYTES))
        port = D.free_port()
        attn = ws.model.config._attn_implementation
        spec = GeneratorSpec(
            engine=cfg.rollout.engine,
            model_dir=ws.model_dir,
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            attn="sdpa" if attn == "packed_sdpa" else attn,  # generation never packs
            threads=gen_threads,
            host="127.0.0.1",
            port=port,
            layout=layout,
            seed=cfg.run.seed * 1000 + D.rank(),
            engine_kwargs=engine_kwargs(cfg, ws),
            device=placement.device,
            visible_devices=placement.visible_devices,
        )
        self.proc = GeneratorProcess(spec)
        where = f"GPU {placement.visible_devices}" if placement.visible_devices else f"{gen_threads} thread(s)"
        log.info(
            "asynchronous rollouts: a %s generator process (pid %d, %s) runs up to %d request(s) ahead; "
            "the trainer keeps %d thread(s)",
            cfg.rollout.engine,
            self.proc.proc.pid,
            where,
            self.k,
            trainer_threads,
        )
        try:
            self.sender = WeightSender("127.0.0.1", port, layout, device=device)
            self.proc.wait_ready()
            self._send_weights()  # version 0: the weights the run starts from (a resumed checkpoint's)
        except BaseException:
            self.proc.close()
            raise

    # -- requests --------------------------------------------------------------------------------------

    def _submit(self, n: int) -> None:
        before = self.position.stream.state_dict()
        prompts = self.position.stream.next(n)
        rid, self._next_id = self._next_id, self._next_id + 1
        self.position.in_flight.append((rid, before, prompts))
        seeds = prompt_seeds(prompts, self.cfg)
        self.proc.send(Request(rid, [p.prompt_ids for p in prompts], sampling_params(self.cfg), seeds))

    def _receive(self, rid: int, on_wait=None) -> Result:
        while rid not in self.ready:
            r = self.proc.recv(on_wait=on_wait)
            self.ready[r.id] = r
        return self.ready.pop(rid)

    def next_prompts(self, n: int) -> list[PromptRecord]:
        """The prompts of the oldest request in flight, once it is generated (submitting it first when none is
        in flight); tops the pipeline back up to k requests."""
        if not self.position.in_flight:
            self._submit(n)
        rid, _, prompts = self.position.in_flight[0]
        t0 = time.perf_counter()
        result = self._receive(rid)
        self.stats.actor_wait_s += time.perf_counter() - t0
        self.stats.generator_wait_s += result.idle_s
        self.stats.transfer_s += result.load_s
        self.stats.generate_s += result.generate_s
        self.position.in_flight.popleft()
        while len(self.position.in_flight) < self.k:
            self._submit(n)
        self._current = (prompts, result)
        return prompts

    def rollout(self, prompts: list[PromptRecord], timer) -> list:
        """The scored groups of the request ``next_prompts`` returned; none when it is too stale."""
        got, result = self._current
        assert got is prompts, "rollout() takes the prompts of the last next_prompts()"
        staleness = self.version - result.version
        self.stats.staleness.append(staleness)
        if staleness > self.k:
            self.stats.dropped += len(prompts)
            log.warning("dropped %d group(s) %d updates old (max_staleness %d)", len(prompts), staleness, self.k)
            return []
        return score_groups(prompts, result.generations, self.cfg, timer)

    # -- weights ---------------------------------------------------------------------------------------

    def _send_weights(self) -> None:
        t0 = time.perf_counter()
        self.sender.send(self.version, self.weights(self.model, BUCKET_BYTES))
        self.stats.transfer_s += time.perf_counter() - t0

    def push(self) -> None:
        """After an update: the generator gets the new weights (version + 1) before its next request."""
        self.version += 1
        try:
            self._send_weights()
        except RuntimeError as e:
            self.proc.proc.join(5)  # a generator whose link failed reports it and exits
            if not self.proc.proc.is_alive():
                raise self.proc._ended() from None
            raise GeneratorError(f"weight transfer to the rollout generator failed: {e}") from None

    # -- evaluation and the end ------------------------------------------------------------------------

    def generate_now(self, prompts: list[list[int]], params) -> list:
        """Generations from the newest weights (after the requests in flight), for evaluation."""
        rid, self._next_id = self._next_id, self._next_id + 1
        self.proc.send(Request(rid, prompts, params, None, min_version=self.version))
        return self._receive(rid).generations

    def step_metrics(self) -> dict:
        out, self.stats = self.stats.summary(), StepStats()
        return out

    def close(self) -> None:
        self.proc.close()


def generator_placement_here(device: torch.device) -> Placement:
    """This rank's generator placement (GeneratorError when the node has no GPU for it)."""
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    return generator_placement(str(device), D.local_rank(), D.local_world_size(), node_gpus(dict(os.environ), count))


def engine_kwargs(cfg: Config, ws) -> dict:
    """What build_engine needs besides the model (the generator loads its own copy)."""
    r = cfg.rollout
    if r.engine in ("torch", "hf"):
        return {"batch_size": r.batch_size}
    longest = max((len(p.prompt_ids) for p in [*ws.train, *ws.eval]), default=cfg.data.max_prompt_length)
    return {
        "seed": cfg.run.seed,
        "gpu_memory_utilization": r.gpu_memory_utilization,
        "tensor_parallel_size": r.tensor_parallel_size,
        "max_prompt_length": longest,
        "max_response_length": r.max_response_length,
        "sleep_mode": False,  # the generator's device is its own: nothing to free it for
    }


class AsyncEngine:
    """The rollout engine interface over the generator, for evaluation (``evaluate_accuracy``)."""

    def __init__(self, source: AsyncRollout):
        self.source = source

    def generate(self, prompts, params, seeds=None):
        return self.source.generate_now(prompts, params) if prompts else []


__all__ = ["AsyncRollout", "AsyncEngine", "StreamPosition", "GeneratorError"]
