"""Where each rank's generator process runs (asynchronous rollouts): the device it generates on and the GPUs it sees.

On a CPU machine the generator shares the node's cores with its trainer (``rollout.generator_threads``). On a GPU
machine it takes a GPU of its own, as in verl's one-step-off layout: the node's trainer ranks use the first
GPUs (rank r on GPU r) and rank r's generator the GPU after all of them, local_world_size + r. The generator
process is shown only that GPU (``CUDA_VISIBLE_DEVICES``), so a vLLM or torch engine there cannot touch the
trainers' memory, and the weight link between the two GPUs runs over NCCL.

DeepSpeed's per-node launcher narrows each rank's ``CUDA_VISIBLE_DEVICES`` to the trainer GPUs, so ``fastdapo
launch`` passes the node's whole list on in ``NODE_GPUS``; a rank started any other way reads its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastdapo.rollout.generator_process import GeneratorError

NODE_GPUS = "FASTDAPO_NODE_GPUS"  # the node's GPU ids, before a launcher narrows them per rank


@dataclass(frozen=True)
class Placement:
    device: str  # the device the generator generates on, as the generator process names it
    visible_devices: str | None  # CUDA_VISIBLE_DEVICES for the generator process; None: left as it is


def visible_gpus(env: dict, device_count: int) -> list[str]:
    """The GPU ids this process sees, as CUDA_VISIBLE_DEVICES names them (indices when it is unset)."""
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(device_count)]
    return _ids(listed)[:device_count]


def _ids(listed: str) -> list[str]:
    return [d.strip() for d in listed.split(",") if d.strip()]


def node_gpus(env: dict, device_count: int) -> list[str]:
    """The node's GPU ids: as the launcher saw them when it passed them on, else as this process sees them."""
    listed = env.get(NODE_GPUS)
    if listed is not None:
        return _ids(listed)
    return visible_gpus(env, device_count)


def trainer_slots(gpus: list[str], procs: int) -> list[int] | None:
    """The GPU ids a per-node launcher gives its ``procs`` trainer ranks: the node's first ones (None when
    they are not plain indices, or too few: the launcher's own numbering then stands)."""
    if len(gpus) < procs or not all(g.isdigit() for g in gpus[:procs]):
        return None
    return [int(g) for g in gpus[:procs]]


def generator_placement(trainer_device: str, local_rank: int, local_world_size: int, visible: list[str]) -> Placement:
    """The placement of rank ``local_rank``'s generator, or GeneratorError (one line) when the node lacks a GPU
    for it."""
    if not trainer_device.startswith("cuda"):
        return Placement("cpu", None)
    wanted = local_world_size + local_rank
    if wanted >= len(visible):
        return _refuse(local_world_size, len(visible))
    return Placement("cuda:0", visible[wanted])


def _refuse(local_world_size: int, count: int):
    raise GeneratorError(
        f"rollout.max_staleness >= 1 on GPUs needs a GPU of its own for each rank's generator: {local_world_size} "
        f"trainer process(es) on this node need {2 * local_world_size} GPUs and {count} are visible; start at most "
        f"{max(count // 2, 0)} process(es) per node (fastdapo launch --num-procs) or set rollout.max_staleness=0"
    )
