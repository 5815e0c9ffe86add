"""Who a worker is among its siblings: its index, its socket, and how to find theirs.

The parent hands each worker one environment variable (:data:`ENV`); everything else a worker
needs to know about its siblings follows from it. Node ids carry the replica's token and the
worker's index (``host:port:<token>.w<i>:<uuid>``), so from the node id in a hop or in an
instance's directory record a worker tells a sibling (same token) from another replica, and
which socket reaches it, without asking anyone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Not EVENT_GATEWAY_*: those are configuration keys (see gateway/config.py).
ENV = "EVGW_WORKER"
_SIBLING = re.compile(r"\.w(\d+):")


@dataclass(frozen=True)
class WorkerIdentity:
    index: int
    count: int
    token: str  # random per start of the parent: siblings of this start share it
    run_dir: str  # private directory (0700) holding the siblings' sockets

    def encode(self) -> str:
        return f"{self.index}/{self.count}/{self.token}/{self.run_dir}"

    @classmethod
    def decode(cls, value: str) -> WorkerIdentity:
        index, count, token, run_dir = value.split("/", 3)
        return cls(int(index), int(count), token, run_dir)

    @classmethod
    def from_env(cls) -> WorkerIdentity | None:
        value = os.environ.get(ENV)
        return cls.decode(value) if value else None

    def node_name(self, host_port: str) -> str:
        """The stable part of this worker's node id (the router appends a unique suffix)."""
        return f"{host_port}:{self.token}.w{self.index}"

    def slot(self, self_url: str) -> str:
        """The directory key a restarted worker takes over from its dead predecessor."""
        return f"{self_url}#w{self.index}"

    def socket_path(self, index: int) -> str:
        return str(Path(self.run_dir) / f"w{index}.sock")

    def sibling_socket(self, node_id: str) -> str | None:
        """The socket of the sibling ``node_id`` names, or None (this worker, or a node of
        another replica, or of an earlier start of this one)."""
        marker = f":{self.token}.w"
        at = node_id.find(marker)
        if at < 0:
            return None
        m = _SIBLING.match(node_id, at + len(marker) - 2)
        if m is None:
            return None
        index = int(m.group(1))
        if index == self.index or index >= self.count:
            return None
        return self.socket_path(index)
