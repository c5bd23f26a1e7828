"""What the launcher told this process: Open MPI's ``mpirun`` (OMPI_COMM_WORLD_*), a
torchrun-style environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or
nothing (one process)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    kind: str            # "mpi", "env" or "single"
    rank: int
    world_size: int
    local_rank: int
    master_addr: str = "127.0.0.1"
    master_port: int = 0


def _int(env, name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"[distributed] environment variable {name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"[distributed] environment variable {name} must be an integer, got {value!r}") from None


def detect(env=None) -> Launch:
    """The launch this process belongs to (``env`` defaults to ``os.environ``)."""
    env = os.environ if env is None else env
    if "OMPI_COMM_WORLD_SIZE" in env:
        size = _int(env, "OMPI_COMM_WORLD_SIZE")
        rank = _int(env, "OMPI_COMM_WORLD_RANK")
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK", rank)
        return _checked(Launch("mpi", rank, size, local))
    if "WORLD_SIZE" in env or "RANK" in env:
        size, rank = _int(env, "WORLD_SIZE"), _int(env, "RANK")
        local = _int(env, "LOCAL_RANK", rank)
        port = _int(env, "MASTER_PORT", 29500)
        if not 0 < port < 65536:
            raise ValueError(f"[distributed] MASTER_PORT must be a TCP port (1..65535), got {port}")
        return _checked(Launch("env", rank, size, local, env.get("MASTER_ADDR", "127.0.0.1"), port))
    return Launch("single", 0, 1, 0)


def _checked(launch: Launch) -> Launch:
    if launch.world_size < 1:
        raise ValueError(f"[distributed] world size must be >= 1, got {launch.world_size}")
    if not 0 <= launch.rank < launch.world_size:
        raise ValueError(f"[distributed] rank {launch.rank} is not in [0, {launch.world_size})")
    if launch.local_rank < 0:
        raise ValueError(f"[distributed] local rank must be >= 0, got {launch.local_rank}")
    return launch


def rendezvous_port(launch: Launch, env=None) -> int:
    """The port of metalnn's bootstrap rendezvous. torchrun's agent already serves its own
    store on MASTER_PORT, so then the next port is used; METALNN_RENDEZVOUS_PORT overrides."""
    env = os.environ if env is None else env
    if env.get("METALNN_RENDEZVOUS_PORT"):
        return _int(env, "METALNN_RENDEZVOUS_PORT")
    agent = env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() in ("1", "true")
    return launch.master_port + 1 if agent else launch.master_port


def select_gpu(launch: Launch, env=None) -> str | None:
    """Gives this process one GPU (its local rank's) through CUDA_VISIBLE_DEVICES, before CUDA
    starts: the CUDA backend runs on device 0 of what it sees. Returns the value set."""
    env = os.environ if env is None else env
    if launch.world_size == 1:
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        env["CUDA_VISIBLE_DEVICES"] = str(launch.local_rank)
    else:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if len(ids) > 1:  # a list for the node: this rank's entry
            if launch.local_rank >= len(ids):
                raise ValueError(f"[distributed] local rank {launch.local_rank} has no GPU in "
                                 f"CUDA_VISIBLE_DEVICES={visible!r}")
            env["CUDA_VISIBLE_DEVICES"] = ids[launch.local_rank]
    return env.get("CUDA_VISIBLE_DEVICES")
