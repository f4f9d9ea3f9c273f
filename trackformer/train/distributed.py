"""Process-group setup for data-parallel training (``torchrun --nproc_per_node=N ...``) and the trainer's helpers.

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment, WORLD_SIZE > 1) :func:`setup` joins the
process group: NCCL when the run uses CUDA (each rank on cuda:LOCAL_RANK), gloo on the CPU. Without those
variables everything runs as a single process (rank 0 of 1) and the helpers are no-ops.
"""

import dataclasses
import os

import torch
import torch.distributed as dist

from trackformer.checkpoint_io import resolve_device


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank in [0, world_size), local_rank on its node, its torch device; owns_group:
    :func:`setup` created the process group (so :func:`teardown` destroys it)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def setup(device: str = "auto") -> DistInfo:
    """Joins the torchrun process group if there is one (idempotent) and picks this rank's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    base = resolve_device(device)
    if world_size <= 1:
        return DistInfo(0, 1, 0, base)
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible")
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if base.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, base, owns_group)


def teardown(info: DistInfo) -> None:
    """Destroys the process group if :func:`setup` created it (no-op otherwise)."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def any_rank(info: DistInfo, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on at least one (so all ranks stop together)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``values`` (same shape on every rank) over the ranks."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def gather_objects(info: DistInfo, obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects, e.g. RNG states)."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
