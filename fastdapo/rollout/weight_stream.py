"""The trainer's weights as a stream of (name, tensor) pieces, for engines that hold their own copy (vLLM).

Every name of the checkpoint is produced, tied ones included (``lm_head.weight`` alongside
``model.embed_tokens.weight``): an engine that unties or repacks weights at load time would otherwise
keep a stale head. Under ZeRO-3 the parameters are gathered a bounded group at a time, so the full
model is never materialised at once on a rank.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

DEFAULT_CHUNK_BYTES = 256 * 2**20


def _is_zero3(p: torch.nn.Parameter) -> bool:
    return hasattr(p, "ds_id")


def _full_bytes(p: torch.nn.Parameter) -> int:
    numel = p.ds_numel if _is_zero3(p) else p.numel()
    return numel * p.element_size()


def param_groups(model: torch.nn.Module, chunk_bytes: int) -> list[list[tuple[torch.nn.Parameter, list[str]]]]:
    """Unique parameters with all their names, grouped so each group's full size stays <= chunk_bytes
    (a single larger parameter forms a group of its own)."""
    names: dict[int, tuple[torch.nn.Parameter, list[str]]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), (p, []))[1].append(name)
    groups, current, size = [], [], 0
    for p, ns in names.values():
        b = _full_bytes(p)
        if current and size + b > chunk_bytes:
            groups.append(current)
            current, size = [], 0
        current.append((p, ns))
        size += b
    if current:
        groups.append(current)
    return groups


def named_weights(model: torch.nn.Module, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[str, torch.Tensor]]:
    """Yields (name, full tensor) for every parameter name. Under ZeRO-3 the tensors are copies, since a
    consumer may hold them past the release of their group (vLLM buffers a layer's pieces until it is whole)."""
    groups = param_groups(model, chunk_bytes)
    sharded = any(_is_zero3(p) for g in groups for p, _ in g)
    if not sharded:
        for group in groups:
            for p, ns in group:
                for n in ns:
                    yield n, p.detach()
        return
    import deepspeed  # only ZeRO-3 parameters reach here

    for group in groups:
        with deepspeed.zero.GatheredParameters([p for p, _ in group]):
            for p, ns in group:
                full = p.detach().clone()
                for n in ns:
                    yield n, full
