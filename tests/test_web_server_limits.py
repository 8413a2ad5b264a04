"""The nurse view's server under load it should refuse: connections held open by one client."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.config import config_from_dict
from gateway.state.history import History
from gateway.web import server as web_server
from gateway.web.server import WebServer

pytestmark = pytest.mark.system


class FakeGateway:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.sessions: dict = {}
        self.history = History(None)


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode())
        return s.recv(200)


async def _until(done, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server did not get there")


def test_connections_held_open_do_not_take_the_server(tmp_path):
    cfg = config_from_dict({"gateway": {"data_dir": "gw"}}, base_dir=tmp_path)

    async def main():
        server = WebServer(FakeGateway(cfg), listen="127.0.0.1:0")
        await server.start()
        connections = server.server.server_state.connections
        held = []
        try:
            # Before: every connection was served; a client holding thousands kept their
            # requests (and bodies) in memory.
            for _ in range(web_server._MAX_CONNECTIONS):
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            await _until(lambda: len(connections) == len(held))  # all accepted
            refused = await asyncio.to_thread(_get, server.port, "/login")
            for s in held:
                s.close()
            held.clear()
            await _until(lambda: not connections)
            served = await asyncio.to_thread(_get, server.port, "/login")
            return refused, served
        finally:
            for s in held:
                s.close()
            await server.stop()

    refused, served = asyncio.run(main())
    assert refused.startswith(b"HTTP/1.1 503"), refused
    assert served.startswith(b"HTTP/1.1 200"), served
