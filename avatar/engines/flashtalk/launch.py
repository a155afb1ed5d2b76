"""One process per GPU for sequence parallelism: the avatar worker's process is rank 0 and starts the others.

The worker needs no change and no ``torchrun``: with ``sequence_parallel: N`` in its engine
options, :func:`avatar.engines.flashtalk.create_engine` (in the worker's process, which keeps
talking to LiveKit) calls :func:`start_group`, which

1. picks a free local TCP port and starts N-1 follower processes
   (``python -m avatar.engines.flashtalk.launch --follower``) with torchrun's environment
   variables (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
2. joins the process group as rank 0 (NCCL on GPUs, gloo on CPU), rank i on ``cuda:i`` of the
   visible devices (choose them with ``CUDA_VISIBLE_DEVICES``);
3. sends each follower, on its stdin, the recipe for its pipeline (module:function + keyword
   arguments: the engine's settings, or the benchmark's random weights).

Afterwards rank 0 writes one small command per event to every follower's stdin (open a call
with its avatar features, render a chunk, close the call, shut down); the tensors themselves
(the audio windows, the DiT's token shards, the motion latent) travel over the process group.
A follower whose stdin closes (rank 0 exited or was killed) exits at once, so no GPU process
outlives the worker. Collectives time out after ``DIST_TIMEOUT_S`` if a rank dies mid-chunk,
and rank 0 checks that every follower is alive before each chunk.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.distributed as dist

from ..base import EngineError
from .parallel import SequenceParallel

logger = logging.getLogger("avatar.engines.flashtalk")

DIST_TIMEOUT_S = 600  # a collective waiting longer than this means a rank is gone


# ---------------------------------------------------------------------------------------
# command channel: length-prefixed pickles over the followers' stdin


def send_message(pipe: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(struct.pack("<Q", len(data)) + data)
    pipe.flush()


def read_message(pipe: BinaryIO) -> Any:
    """The next message, or ``None`` at end of file (rank 0 is gone)."""
    head = pipe.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    data = pipe.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def device_for_rank(device: str, rank: int) -> str:
    """``cuda``/``auto`` on a GPU box -> ``cuda:rank``; ``cpu`` stays ``cpu``."""
    if device in ("auto", "cuda") or device.startswith("cuda"):
        if device == "auto" and not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{rank}"
    return device


def _init_process_group(rank: int, world: int, device: str) -> SequenceParallel:
    if dist.is_initialized():
        raise EngineError(
            "a torch.distributed process group is already running in this process; one sequence-parallel "
            "engine per process."
        )
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(
        backend, rank=rank, world_size=world, init_method="env://",
        timeout=datetime.timedelta(seconds=DIST_TIMEOUT_S),
    )  # fmt: skip
    return SequenceParallel()


# ---------------------------------------------------------------------------------------
# rank 0


@dataclass
class Group:
    """Rank 0's handle on the followers: send commands, check they live, shut them down."""

    sp: SequenceParallel
    procs: list[subprocess.Popen] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    closed: bool = False

    @property
    def world(self) -> int:
        return self.sp.world

    def check(self) -> None:
        for i, p in enumerate(self.procs, start=1):
            if p.poll() is not None:
                raise EngineError(
                    f"flashtalk: sequence-parallel rank {i} exited (code {p.returncode}); restart the avatar worker."
                )

    def send(self, *message: Any) -> None:
        """The same command to every follower (call it with :attr:`lock` held around the matching work)."""
        self.check()
        for p in self.procs:
            send_message(p.stdin, message)

    def close(self, timeout: float = 30.0) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for p in self.procs:
                try:
                    send_message(p.stdin, ("shutdown",))
                    p.stdin.close()
                except (BrokenPipeError, OSError, ValueError):
                    pass
            for p in self.procs:
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if dist.is_initialized():
                dist.destroy_process_group()


def start_group(world: int, device: str, builder: str, kwargs: dict[str, Any]) -> Group:
    """Start ``world - 1`` followers, join the group as rank 0 and have each follower build its
    pipeline with ``builder`` ("module:function", called as ``function(sp=..., device=..., **kwargs)``)."""
    if world < 2:
        raise ValueError("start_group needs at least 2 ranks")
    if device.startswith("cuda") or device == "auto" and torch.cuda.is_available():
        have = torch.cuda.device_count()
        if have < world:
            raise EngineError(
                f"sequence_parallel={world} needs {world} GPUs, {have} visible (CUDA_VISIBLE_DEVICES)."
            )
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world)}
    # the followers import this very copy of the code, whatever their working directory
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    procs = []
    for rank in range(1, world):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "avatar.engines.flashtalk.launch", "--follower"],
                stdin=subprocess.PIPE,
                env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            )
        )
    group = Group(sp=None, procs=procs)  # type: ignore[arg-type]
    try:
        for p in procs:  # the recipe first: the followers build while rank 0 builds
            send_message(p.stdin, ("build", builder, kwargs, device))
        os.environ.update({k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT")})
        group.sp = _init_process_group(0, world, device_for_rank(device, 0))
    except BaseException:
        for p in procs:
            p.kill()
        raise
    logger.info("flashtalk: sequence parallel over %d ranks (port %d)", world, port)
    return group


# ---------------------------------------------------------------------------------------
# followers


def serve_follower(inp: BinaryIO) -> int:
    """A follower's life: build the pipeline, then mirror rank 0's calls and chunks until shutdown."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    first = read_message(inp)
    if first is None:
        return 0
    _, builder, kwargs, device = first
    dev = device_for_rank(device, int(os.environ.get("LOCAL_RANK", rank)))
    sp = _init_process_group(rank, world, dev)
    module, _, name = builder.partition(":")
    pipe = getattr(importlib.import_module(module), name)(sp=sp, device=dev, **kwargs)
    streams: dict[Any, Any] = {}
    try:
        while True:
            msg = read_message(inp)
            if msg is None or msg[0] == "shutdown":
                return 0
            op = msg[0]
            if op == "open":
                streams[msg[1]] = pipe.open_stream(msg[2])
            elif op == "chunk":
                streams[msg[1]].submit(
                    torch.zeros(streams[msg[1]].samples_per_chunk).numpy()
                ).result()  # the audio itself comes from rank 0 over the group
            elif op == "close":
                streams.pop(msg[1], None)
            else:
                raise RuntimeError(f"unknown command {op!r}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--follower", action="store_true", help="run as a follower rank (started by rank 0)")
    a = p.parse_args(argv)
    if not a.follower:
        p.error("this module is started by the engine (sequence_parallel > 1); see the README")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ.get("FLASHTALK_FOLLOWER_THREADS", "0")) or torch.get_num_threads())
    return serve_follower(sys.stdin.buffer)


if __name__ == "__main__":
    sys.exit(main())
