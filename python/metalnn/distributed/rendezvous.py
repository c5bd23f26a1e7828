"""A tiny TCP rendezvous for bootstrap bytes only (NCCL's 128-byte unique id): rank 0 listens
on MASTER_ADDR:port, every other rank connects, says who it is and receives rank 0's bytes.
Gradients never travel here. Every wait has a deadline: a missing rank raises, never hangs."""

from __future__ import annotations

import socket
import struct
import time

_MAGIC = b"MNNR"
_HELLO = struct.Struct("!4sII")   # magic, rank, world size
_LEN = struct.Struct("!I")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        out += chunk
    return out


def exchange(payload: bytes | None, rank: int, world_size: int, addr: str, port: int,
             timeout: float = 60.0) -> bytes:
    """Rank 0 passes ``payload`` and gets it back; other ranks pass None and get rank 0's.
    Raises RuntimeError naming the address when the ranks do not all arrive in ``timeout`` s."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"[distributed] rendezvous: rank {rank} is not in [0, {world_size})")
    if rank == 0:
        if payload is None:
            raise ValueError("[distributed] rendezvous: rank 0 must pass the payload")
        return _serve(payload, world_size, addr, port, timeout)
    return _join(rank, world_size, addr, port, timeout)


def _serve(payload: bytes, world_size: int, addr: str, port: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            srv.bind(("" if addr in ("", "0.0.0.0") else _bind_host(addr), port))
        except OSError as e:
            raise RuntimeError(f"[distributed] rendezvous: rank 0 cannot listen on {addr}:{port}: {e} "
                               "(set METALNN_RENDEZVOUS_PORT to a free port)") from None
        srv.listen(max(1, world_size))
        seen: set[int] = set()
        while len(seen) < world_size - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, world_size)) - seen)
                raise RuntimeError(f"[distributed] rendezvous on {addr}:{port}: rank(s) {missing} did not "
                                   f"arrive within {timeout:.0f} s")
            srv.settimeout(left)
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    magic, rank, size = _HELLO.unpack(_recv_exact(conn, _HELLO.size))
                except (OSError, ConnectionError, struct.error):
                    continue  # not one of ours (a port scan, a stale client): keep waiting
                if magic != _MAGIC:
                    continue
                if size != world_size:
                    raise RuntimeError(f"[distributed] rendezvous: rank {rank} says world size {size}, "
                                       f"rank 0 has {world_size}")
                if rank in seen or not 0 < rank < world_size:
                    raise RuntimeError(f"[distributed] rendezvous: rank {rank} joined twice or is out of range")
                conn.sendall(_LEN.pack(len(payload)) + payload)
                seen.add(rank)
    return payload


def _bind_host(addr: str) -> str:
    # Rank 0 may be reached under a host name that resolves to another interface: listen on all.
    return "" if addr not in ("127.0.0.1", "localhost") else addr


def _join(rank: int, world_size: int, addr: str, port: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))) as s:
                if s.getsockname() == s.getpeername():
                    raise ConnectionError("connected to itself")  # TCP self-connect on a free local port
                s.settimeout(max(0.1, deadline - time.monotonic()))
                s.sendall(_HELLO.pack(_MAGIC, rank, world_size))
                (n,) = _LEN.unpack(_recv_exact(s, _LEN.size))
                return _recv_exact(s, n)
        except (OSError, ConnectionError) as e:
            last = e
            time.sleep(0.05)  # rank 0 is not listening yet
    raise RuntimeError(f"[distributed] rendezvous: rank {rank} could not reach rank 0 at {addr}:{port} "
                       f"within {timeout:.0f} s ({last})")
