"""NCCL's device rule, emulated on a CPU machine.

On a GPU the trainer's process group, and the weight link to an asynchronous generator, are NCCL, which
carries only CUDA tensors: a CPU tensor handed to a collective raises "No backend type associated with device
type cpu". On a CPU machine both are gloo and the accelerator *is* the CPU, so a wrong device cannot show. This
emulation restores the difference: a tensor counts as being on the group's device only once fastdapo placed it
there through `fastdapo.runtime.distributed.to_comm` (the link's: `fastdapo.rollout.weight_transfer.to_link`;
what `.to(cuda)` is on a GPU), and a tensor collective called from fastdapo code with any other tensor raises
NCCL's error. Collectives called by DeepSpeed, vLLM or torch itself
pass: they communicate model tensors, which live on the training device on a GPU too.

Installed in every Python process that has this folder on PYTHONPATH and FASTDAPO_NCCL_RULE=1 (through
sitecustomize), or in-process by `install()`.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

ENV = "FASTDAPO_NCCL_RULE"
MARK = "_fastdapo_on_comm_device"
TENSOR_COLLECTIVES = (
    "all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
    "reduce_scatter_tensor", "all_to_all", "all_to_all_single", "gather", "scatter", "send", "recv", "isend", "irecv",
)  # fmt: skip
PATCHED = {
    "torch.distributed": "_guard_collectives",
    "fastdapo.runtime.distributed": "_mark_placement",
    "fastdapo.rollout.weight_transfer": "_guard_link",  # the trainer -> generator weight link, NCCL between GPUs
}


def _tensors(args, kwargs):
    import torch

    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (x for x in a if isinstance(x, torch.Tensor))


def _guard(name, fn):
    def collective(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("fastdapo"):
            for t in _tensors(args, kwargs):
                if not getattr(t, MARK, False):
                    raise RuntimeError(
                        f"No backend type associated with device type {t.device.type} (emulated NCCL rule: "
                        f"{caller} called {name} with a tensor not placed on the group's device)"
                    )
        return fn(*args, **kwargs)

    collective._emulated_nccl = True
    return collective


def _guard_collectives(module):
    for name in TENSOR_COLLECTIVES:
        fn = getattr(module, name, None)
        if fn is not None and not hasattr(fn, "_emulated_nccl"):  # (torch's own wrappers carry __wrapped__)
            setattr(module, name, _guard(f"torch.distributed.{name}", fn))


def _mark_placement(module, name="to_comm"):
    place = getattr(module, name, None)
    if place is None or hasattr(place, "_emulated_nccl"):
        return  # code without the one placement function: nothing it sends counts as on the group's device

    def placed(t, *args, **kwargs):
        out = place(t, *args, **kwargs)
        setattr(out, MARK, True)
        return out

    placed._emulated_nccl = True
    setattr(module, name, placed)


def _guard_link(module):
    """The weight link's broadcast serves only tensors placed by its ``to_link``."""
    _mark_placement(module, "to_link")
    fn = getattr(module, "link_broadcast", None)
    if fn is not None and not hasattr(fn, "_emulated_nccl"):
        module.link_broadcast = _guard("link_broadcast", fn)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a module right after it executes, before any caller can take names from it."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHED:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            globals()[PATCHED[name]](module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    for name, patch in PATCHED.items():
        if name in sys.modules:
            globals()[patch](sys.modules[name])
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
