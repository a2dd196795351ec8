"""A real WebSocket server and client (the `websockets` package from PyPI) for the
sidecar's upgrade tests. One line per event on stdout, flushed:

    python3 ws_peer.py server            # LISTENING <port>; OPEN <path>; CLOSED
    python3 ws_peer.py client URL N      # ECHOED N, or STATUS <code> if refused
    python3 ws_peer.py hold URL          # ECHOED 1, READY; on a stdin line: STILL OPEN

The server echoes every message. Everything binds and connects to 127.0.0.1 only.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus


def say(line):
    print(line, flush=True)


async def server():
    async def echo(ws):
        say(f"OPEN {ws.request.path}")
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            say("CLOSED")

    async with serve(echo, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        say(f"LISTENING {port}")
        await asyncio.get_running_loop().create_future()


async def exchange(ws, i):
    await ws.send(f"message {i}")
    got = await asyncio.wait_for(ws.recv(), 10)
    assert got == f"message {i}", got


async def client(url, n):
    try:
        async with connect(url, open_timeout=10) as ws:
            for i in range(n):
                await exchange(ws, i)
        # After the closing handshake.
        say(f"ECHOED {n}")
    except InvalidStatus as e:
        say(f"STATUS {e.response.status_code}")


async def hold(url):
    async with connect(url, open_timeout=10) as ws:
        await exchange(ws, 0)
        say("ECHOED 1")
        say("READY")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await exchange(ws, 1)
        say("STILL OPEN")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(server())
    elif mode == "client":
        asyncio.run(client(sys.argv[2], int(sys.argv[3])))
    elif mode == "hold":
        asyncio.run(hold(sys.argv[2]))
    else:
        sys.exit(f"unknown mode {mode}")
