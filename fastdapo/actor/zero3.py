"""ZeRO-3 and generation: gather the sharded parameters once for the whole generate() call.

Left alone, ZeRO-3 fetches each layer's parameters inside every decoding step through collectives,
which deadlocks as soon as ranks decode a different number of steps. So, while generating, the
full weights are gathered and DeepSpeed's per-module fetch/release hooks are taken off.
"""

from __future__ import annotations

import contextlib


def _coordinator(engine):
    opt = engine.optimizer
    return getattr(opt, "parameter_offload", opt)


@contextlib.contextmanager
def gathered_for_generation(engine):
    if engine.zero_optimization_stage() != 3:
        yield
        return
    import deepspeed

    offload = _coordinator(engine)
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        for p in engine.module.parameters():
            p.ds_active_sub_modules.clear()
        for hook in offload.forward_hooks + offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            coordinator = getattr(offload, "param_coordinator", None)
            if coordinator is not None and not coordinator.is_invalid_trace():
                coordinator._invalidate_trace()  # the recorded fetch order no longer holds
            offload._register_deepspeed_module(offload.module)
