"""Ports for servers the tests start: free on 127.0.0.1 when asked (suites may run side by side
on one machine, so no test listens on a fixed port)."""

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
