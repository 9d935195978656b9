"""Helpers for multi-process data parallel training under ``torchrun`` (gloo on CPU, nccl on GPU).

Every helper is a no-op (or the single-process answer) when no process group is initialised.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def all_gather_rows(rows: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``rows`` (n_r, ...), in rank order; the counts n_r may differ between processes.

    Each process pads its rows with zeros to the largest count, the padded blocks are all-gathered and
    each is cut back to its own count. Without a process group: ``[rows]``."""
    _, world = rank_and_world()
    if world == 1:
        return [rows]
    sizes = [torch.zeros(1, dtype=torch.long, device=rows.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([rows.shape[0]], device=rows.device))
    biggest = int(max(s.item() for s in sizes))
    padded = torch.zeros((biggest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[: rows.shape[0]] = rows
    gathered = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return [g[: int(s.item())] for g, s in zip(gathered, sizes)]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every process the buffers (BatchNorm statistics) of process ``src``.

    DDP syncs buffers at the start of a forward, so after the last training step each process still
    holds its own; the model written is rank 0's."""
    if rank_and_world()[1] > 1:
        for buf in module.buffers():
            dist.broadcast(buf, src)
