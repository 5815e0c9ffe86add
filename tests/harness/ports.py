"""Free loopback ports, so test servers never collide with each other or with a developer's."""

from __future__ import annotations

import contextlib
import socket


def free_ports(n: int) -> list[int]:
    """Return ``n`` distinct ports that were free on 127.0.0.1 a moment ago.

    All sockets are held open until every port is chosen, so the kernel cannot hand the same
    port out twice within one call (a broker needs a client and a controller port). A small race
    remains with unrelated processes between this call and the server's bind; callers that start
    a server should treat "address in use" as a reason to try again, not as a test failure.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port() -> int:
    """One free loopback port; see :func:`free_ports` for the race this leaves."""
    return free_ports(1)[0]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True once something accepts TCP connections on (host, port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
