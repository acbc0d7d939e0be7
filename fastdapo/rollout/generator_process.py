"""A rollout engine in a process of its own, for asynchronous rollouts (``rollout.max_staleness`` >= 1).

The trainer sends requests (prompts, sampling settings, seeds) over a pipe and weights over a process group
of their own (:mod:`fastdapo.rollout.weight_transfer`); the generator answers each request with its
generations and the policy version that produced them. It loads new weights only between requests.

The child ignores SIGINT/SIGTERM (the trainer decides when it stops, after its checkpoint), and the kernel
kills it if the trainer dies (PR_SET_PDEATHSIG), so no generator outlives its trainer.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from fastdapo.rollout.base import Generation, SamplingParams
from fastdapo.rollout.weight_transfer import BUCKET_BYTES, Entry


class GeneratorError(RuntimeError):
    """The generator process failed or ended; the message is one line naming it."""


@dataclass
class GeneratorSpec:
    engine: str  # torch | hf | vllm
    model_dir: str
    dtype: str  # torch dtype name, e.g. "float32"
    attn: str  # the attention generation runs (the trainer's packed_sdpa generates through plain sdpa)
    threads: int
    host: str
    port: int
    layout: list[Entry]
    seed: int = 0
    parent: int = 0  # the trainer's pid
    bucket_bytes: int = BUCKET_BYTES  # the sender's: both ends cut the layout into the same buckets
    engine_kwargs: dict = field(default_factory=dict)
    device: str = "cpu"  # where it generates and receives weights (rollout.generator_layout)
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES of the process: its own GPU only


@dataclass
class Request:
    id: int
    prompts: list[list[int]]
    params: SamplingParams
    seeds: list[int] | None = None
    min_version: int | None = None  # wait for at least this version first (evaluation)


@dataclass
class Result:
    id: int
    version: int  # the policy version that generated every response of the request
    generations: list[Generation]
    idle_s: float  # waiting for this request
    load_s: float  # swapping in new weights before it
    generate_s: float


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the trainer's close() and the pipe's EOF still end it
        pass
    if os.getppid() != parent:  # the trainer died while this process was still starting: too late for the signal
        os._exit(1)


def _build_engine(spec: GeneratorSpec):
    import torch

    from fastdapo.models import load_model_and_tokenizer
    from fastdapo.rollout.registry import build_engine

    dtype = getattr(torch, spec.dtype)
    if spec.engine == "vllm":
        from fastdapo.models import load_tokenizer

        tok = load_tokenizer(spec.model_dir)
        engine = build_engine("vllm", model_path=spec.model_dir, tokenizer=tok, dtype=spec.dtype, **spec.engine_kwargs)

        def load(views):
            engine.update_weights(None, weights=lambda _model, _chunk: iter(views))

        return engine, load
    model, tok = load_model_and_tokenizer(spec.model_dir, dtype=dtype, attn_implementation=spec.attn)
    model.to(spec.device)
    model.config.use_cache = True
    params = dict(model.named_parameters(remove_duplicate=False))
    engine = build_engine(spec.engine, model=model, tokenizer=tok, **spec.engine_kwargs)

    @torch.no_grad()
    def load(views):
        for name, t in views:
            params[name].copy_(t)

    return engine, load


def generator_main(conn, spec: GeneratorSpec) -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    _die_with_parent(spec.parent)
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(k, None)  # a standalone engine, not a member of the trainer's process group
    if spec.visible_devices is not None:  # before anything initialises CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.visible_devices
    import torch

    from fastdapo.rollout.weight_transfer import WeightReceiver

    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    device = torch.device(spec.device)
    sending = threading.Lock()  # results from this thread, a failure from the receiver's

    def report(line: str) -> None:
        with sending:
            try:
                conn.send(("error", line))
            except OSError:
                pass

    def link_failed(e: BaseException) -> None:  # the trainer may be blocked sending: end now, it sees the exit
        report(f"weight transfer from the trainer failed: {first_line(e)}")
        os._exit(1)

    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        receiver = WeightReceiver(spec.host, spec.port, spec.layout, spec.bucket_bytes, device=device,
                                  on_error=link_failed)  # fmt: skip
        engine, load = _build_engine(spec)
        conn.send("ready")
        while True:
            t0 = time.perf_counter()
            req = conn.recv()
            if req is None:
                break
            t1 = time.perf_counter()
            receiver.take(load, at_least=req.min_version if req.min_version is not None else 0)
            t2 = time.perf_counter()
            gens = engine.generate(req.prompts, req.params, seeds=req.seeds)
            t3 = time.perf_counter()
            with sending:
                conn.send(Result(req.id, receiver.loaded, gens, idle_s=t1 - t0, load_s=t2 - t1, generate_s=t3 - t2))
    except EOFError:  # the trainer closed the pipe
        pass
    except BaseException as e:
        report(first_line(e))
        raise SystemExit(1) from None
    finally:
        close = getattr(locals().get("engine"), "close", None)
        if close is not None:
            close()


def first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class GeneratorProcess:
    """Trainer side: the child process, its pipe, and death detection."""

    def __init__(self, spec: GeneratorSpec, start_timeout_s: float = 600.0):
        spec.parent = os.getpid()
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=generator_main, args=(child, spec), name="fastdapo-generator", daemon=True)
        self.proc.start()
        child.close()
        self.start_timeout_s = start_timeout_s

    def wait_ready(self, on_wait=None) -> None:
        msg = self.recv(self.start_timeout_s, on_wait)
        if msg != "ready":
            raise GeneratorError(f"rollout generator process (pid {self.proc.pid}) did not start: {msg!r}")

    def send(self, req: Request) -> None:
        try:
            self.conn.send(req)
        except OSError:
            raise self._ended() from None

    def recv(self, timeout_s: float | None = None, on_wait=None):
        """The next message; GeneratorError if the process ended or reported an error. ``on_wait`` runs every
        second while waiting (the trainer checks its own stop signal there)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.conn.poll(1.0):
            if not self.proc.is_alive():
                raise self._ended()
            if on_wait is not None:
                on_wait()
            if deadline is not None and time.monotonic() > deadline:
                pid = self.proc.pid
                raise GeneratorError(f"rollout generator process (pid {pid}) sent nothing in {timeout_s:.0f} s")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise self._ended() from None
        if (failure := self._reported(msg)) is not None:
            self.proc.join(5)
            raise failure
        return msg

    def _reported(self, msg) -> GeneratorError | None:
        """The error the generator reported in ``msg``, if it is one."""
        if isinstance(msg, tuple) and msg and msg[0] == "error":
            return GeneratorError(f"rollout generator process (pid {self.proc.pid}) failed: {msg[1]}")
        return None

    def _ended(self) -> GeneratorError:
        """The process ended: the error it reported, if it did, else how it ended."""
        self.proc.join(5)
        try:
            while self.conn.poll(0):
                if (failure := self._reported(self.conn.recv())) is not None:
                    return failure
        except (EOFError, OSError):
            pass
        return GeneratorError(
            f"rollout generator process (pid {self.proc.pid}) ended: {describe_exit(self.proc.exitcode)}"
        )

    def close(self, timeout_s: float = 30.0) -> None:
        """Ask it to stop; terminate, then kill, if it does not."""
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()
