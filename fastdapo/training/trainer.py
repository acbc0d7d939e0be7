"""The DAPO training loop, top to bottom in data-flow order:

rollout -> reward -> dynamic-sampling filter -> advantage -> pack -> old log-probs
        -> mini-batch updates (token-level loss) -> optimizer step -> weight sync -> metrics / checkpoint
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from fastdapo.actor.actor import Actor
from fastdapo.actor.ds_engine import build_ds_engine
from fastdapo.actor.lora import merged_named_weights
from fastdapo.actor.policy import LossSettings, PolicyWithLoss
from fastdapo.actor.probe import check_fidelity
from fastdapo.actor.ulysses import ulysses_attention
from fastdapo.algorithm.dynamic_sampling import collect, minibatch_plan
from fastdapo.algorithm.sequences import build_sequences
from fastdapo.checkpoint.checkpointer import Checkpointer
from fastdapo.checkpoint.components import GlobalRNG, HFAssets, ShuffleRNG
from fastdapo.checkpoint.config_changes import review_config_changes
from fastdapo.checkpoint.selection import choose_checkpoint
from fastdapo.config import Config, save_config
from fastdapo.data.prompt_stream import PromptStream
from fastdapo.observability.health import LearningHealth, describe_change
from fastdapo.observability.metrics import Timer, rollout_metrics, timing_metrics, token_mean
from fastdapo.observability.progress import StepProgress, setup_logging
from fastdapo.observability.runlog import RunLog
from fastdapo.packing.packer import build_packer
from fastdapo.runtime import distributed as D
from fastdapo.runtime import sequence_parallel as SP
from fastdapo.runtime.run_lock import RunDirError, RunLock
from fastdapo.runtime.signals import StopSignal
from fastdapo.training.async_rollout import AsyncEngine, AsyncRollout, StreamPosition, generator_placement_here
from fastdapo.training.rollout_stage import build_rollout_engine, evaluate_accuracy, generate_and_score
from fastdapo.training.setup import build_workspace, resolve_dtype

log = logging.getLogger("fastdapo")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lock_run_dir(run_dir: Path) -> RunLock | None:
    """The main rank locks RUN_DIR (creating it); every rank raises the same one-line error if it cannot."""
    lock, why = None, ""
    if D.is_main():
        try:
            lock = RunLock.acquire(run_dir)
        except RunDirError as e:
            why = str(e)
    errors = D.all_gather_list([why] if why else [])
    if errors:
        raise RunDirError(errors[0])
    return lock


def train(cfg: Config) -> dict:
    device = D.resolve_device(cfg.run.device)
    D.init_distributed(device, cfg.distributed.backend, cfg.distributed.timeout_s)
    SP.init_sequence_parallel(cfg.distributed.sequence_parallel_size)  # refuses an S that does not divide
    setup_logging()
    run_dir = Path(cfg.run.output_dir)
    # Before anything is read or written there: a second run on this directory stops here, in one line.
    lock = lock_run_dir(run_dir)
    try:
        with contextlib.ExitStack() as cleanup:  # a generator process ends with the run, however it ends
            return _train(cfg, device, run_dir, cleanup)
    finally:
        if lock is not None:
            lock.release()


def sampling_rounds(cfg: Config, stream, engine, source: AsyncRollout | None, timer):
    """(next_prompts, rollout) for dynamic sampling: synchronous rounds generate now; asynchronous ones take
    the generator's oldest finished request."""
    if source is None:
        return stream.next, lambda prompts: generate_and_score(engine, prompts, cfg, timer)

    def next_prompts(n):
        with timer("rollout"):  # the actor's wait for samples
            return source.next_prompts(n)

    return next_prompts, lambda prompts: source.rollout(prompts, timer)


def _train(cfg: Config, device: torch.device, run_dir: Path, cleanup: contextlib.ExitStack) -> dict:
    seed_everything(cfg.run.seed * 1000 + D.rank())  # ranks sample different responses
    # Decided before anything is written: a checkpoint this run cannot load leaves the directory untouched.
    d = cfg.distributed
    resume_from = choose_checkpoint(run_dir, cfg.run.resume, D.world_size(), d.zero_stage, d.sequence_parallel_size)
    review_config_changes(resume_from, cfg)  # shown as a diff; a setting the checkpoint fixes is refused
    runlog = RunLog(run_dir, cfg)  # the optional TensorBoard / W&B sinks fail here, before any heavy work
    if cfg.rollout.max_staleness >= 1:
        generator_placement_here(device)  # a GPU node without a GPU for each rank's generator: refused now

    ws = build_workspace(cfg, device)
    a = cfg.algorithm
    policy = PolicyWithLoss(ws.model, LossSettings.from_config(cfg))
    mpu = SP.group_state()  # DeepSpeed's sequence-parallel groups (None for S = 1)
    engine = build_ds_engine(policy, cfg, resolve_dtype(cfg.model.dtype, device), device, mpu)
    attn = ws.model.config._attn_implementation
    # with S > 1, rows are split evenly over the group's ranks and attention runs through Ulysses
    ulysses = ulysses_attention(ws.model, attn, SP.group()) if SP.size() > 1 else None
    packer = build_packer(a.max_tokens_per_micro_batch, attn, a.share_prompts, pad_to_multiple_of=SP.size())
    actor = Actor(engine, packer, device, cfg.run.max_nonfinite_skips, ulysses)
    if cfg.model.check_fidelity:  # a model whose forward the trainer does not reproduce is refused before any rollout
        prompts = [p.prompt_ids for p in ws.train[:8]]  # the same on every rank
        check_fidelity(engine, ws.model, packer, prompts, cfg.rollout.temperature, ws.model_dir, ulysses)
    asynchronous = cfg.rollout.max_staleness >= 1  # a generator process (built after the resume) samples
    rollout = None if asynchronous else build_rollout_engine(cfg, ws, engine)
    sync = merged_named_weights if cfg.model.lora.rank else None  # an engine's copy gets the adapters merged
    stream = PromptStream(ws.train, cfg.run.seed, cfg.data.shuffle, D.rank(), D.world_size())
    position = StreamPosition(stream) if asynchronous else None  # saved: the oldest request not trained on
    rng = random.Random(cfg.run.seed)  # mini-batch shuffles
    components = {
        "stream": position or stream,
        "shuffle_rng": ShuffleRNG(rng),
        "nonfinite": actor.nonfinite,
        "rng": GlobalRNG(),
    }  # restored last: nothing after it draws random numbers
    assets = HFAssets(ws.model.config, ws.tokenizer, getattr(ws.model, "generation_config", None))
    ckpt = Checkpointer(run_dir, cfg, engine, components, assets)
    start = ckpt.resume(resume_from)  # weights, optimizer, LR schedule, prompt stream, every RNG
    source = None
    if asynchronous:  # starts from the weights just restored; ended by `cleanup` whatever happens next
        source = cleanup.enter_context(contextlib.closing(AsyncRollout(cfg, ws, position, ws.model, sync)))
        rollout = AsyncEngine(source)  # evaluation runs on the generator too, with the newest weights
    elif ckpt.resumed_from:
        rollout.update_weights(ws.model, sync)  # an engine with its own copy (vLLM) samples from the restored weights
    if D.is_main():  # the run is known to proceed: only now are the earlier run's files replaced
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    runlog.start(start if ckpt.resumed_from else None)  # cuts metrics/samples back to the checkpoint
    log.info(
        "model %s | %d train / %d eval prompts | %d process(es) on %s | ZeRO-%d | sequence parallel %d",
        ws.model_dir,
        len(ws.train),
        len(ws.eval),
        D.world_size(),
        device.type,
        cfg.distributed.zero_stage,
        SP.size(),
    )

    if ckpt.resumed_from:
        acc_before = runlog.logged(0, "eval/acc")
    else:
        acc_before = evaluate_accuracy(rollout, ws.eval, cfg) if ws.eval else None
        if acc_before is not None:
            log.info("step 0 eval/acc %.3f", acc_before)
            runlog.metrics({"step": 0, "eval/acc": acc_before})

    last: dict = {}
    health = LearningHealth()  # warns when steps carry no gradient signal
    with StopSignal() as stop, StepProgress(cfg.run.steps, start=start, enabled=cfg.run.progress) as progress:
        for step in range(start + 1, cfg.run.steps + 1):
            at_start = ckpt.snapshot(step - 1)  # trainer state before this step, should it be abandoned
            timer = Timer()
            t0 = time.perf_counter()
            # 1-3. rollout + reward, repeated until enough informative groups survive the filter
            outcome = collect(
                *sampling_rounds(cfg, stream, rollout, source, timer),
                a.train_batch_size,
                a.gen_batch_size,
                a.max_num_gen_batches,
                a.dynamic_sampling,
                gather=D.all_gather_list,
            )
            # 4. group advantages broadcast to tokens; overlong filtering masks truncated responses (with
            #    sequence parallelism, the ranks of a group train on the groups any of them kept)
            seqs, seq_uids = build_sequences(SP.share(outcome.kept), a.overlong_filtering)
            plans = [minibatch_plan(outcome.kept_uids, a.mini_batch_size, rng) for _ in range(a.ppo_epochs)]
            # 5. old log-probs, once per rollout step (fused kernel, forward only); a single update per
            #    step is on-policy (ratio 1), so its own forward pass stands in for them, unless the samples
            #    come from an older policy (asynchronous): then they are the proximal policy to clip against
            on_policy = a.ppo_epochs == 1 and len(plans[0]) <= 1 and source is None
            rollout_policy: dict = {}
            if not on_policy:
                with timer("old_logprobs"):
                    old_lp, entropy = actor.score(seqs)
                for s, lp in zip(seqs, old_lp):
                    s.old_logprobs = lp
                masks = [s.loss_mask for s in seqs]
                rollout_policy = {
                    "entropy/mean": token_mean(entropy, masks),
                    "logprob/mean_prob": token_mean([lp.exp() for lp in old_lp], masks),
                }
            if stop.requested():  # SIGTERM / SIGINT: abandon the step while the weights are still step-1's
                log.info("step %d abandoned before its update (a resumed run redoes it)", step)
                ckpt.save(step - 1, at_start)
                break
            # 6-7. mini-batch updates with the token-level DAPO loss; DeepSpeed optimizer steps
            with timer("train"):
                upd = actor.update(seqs, seq_uids, plans)
            # 8. weight sync (free for the engines that share the actor's parameters; to the generator process
            #    when asynchronous, which swaps them in before its next request)
            if source is not None:
                source.push()
            else:
                rollout.update_weights(ws.model, sync)

            step_time = time.perf_counter() - t0
            tokens = D.all_reduce(
                [sum(len(g.prompt_ids) + len(g.response_ids) for grp in outcome.generated for g in grp.generations)]
            )[0]
            last = {
                "step": step,
                **rollout_metrics(outcome),
                **upd.summary(),
                **rollout_policy,
                **timing_metrics(timer, step_time, tokens),
                **(source.step_metrics() if source is not None else {}),
            }
            if not outcome.kept_uids:
                log.warning("step %d: no informative group was collected; the update was skipped", step)
            if ws.eval and (step == cfg.run.steps or (cfg.run.eval_every and step % cfg.run.eval_every == 0)):
                last["eval/acc"] = evaluate_accuracy(rollout, ws.eval, cfg)
            runlog.metrics(last)
            health.observe(step, last)
            runlog.samples(step, outcome.generated)
            progress.update(last)
            # 9. checkpoint: every run.save_every steps, at the end, and before stopping on a signal
            stopping = stop.requested()
            if ckpt.due(step) or step == cfg.run.steps or stopping:
                ckpt.save(step)
            if stopping:
                break
    runlog.close()
    learned = health.finish()

    acc_after, acc_summary = last.get("eval/acc"), None
    if acc_before is not None and acc_after is not None:
        acc_summary = describe_change(acc_before, acc_after, len(ws.eval))
        log.info("%s; sampled at T=%.2f, %d per prompt", acc_summary, cfg.rollout.eval_temperature, cfg.rollout.eval_n)
    return {
        "acc_before": acc_before,
        "acc_after": acc_after,
        "acc_summary": acc_summary,
        "learned": learned,
        "last": last,
        "run_dir": str(run_dir),
        "stopped_by": stop.stopping,
    }
