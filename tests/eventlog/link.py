"""A TCP relay between a client and a nats-server that can lose what the server sends: the
faults of a real network (a reply lost with its connection), on a real server."""

from __future__ import annotations

import asyncio


class Link:
    """Relays connections to ``127.0.0.1:<server_port>``; see the module docstring."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.holding = False  # keep the server's bytes from the clients (lost by ``cut``)
        self._ends: list[asyncio.StreamWriter] = []
        self._listener: asyncio.Server | None = None

    async def __aenter__(self) -> Link:
        self._listener = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()

    @property
    def url(self) -> str:
        assert self._listener is not None
        return f"nats://127.0.0.1:{self._listener.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        """Drop every connection, with what is held; new ones are relayed as before."""
        for end in self._ends:
            end.transport.abort()
        self._ends.clear()
        self.holding = False

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.server_port)
        self._ends += [client_out, server_out]

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, held: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if held and self.holding:
                        continue  # never reaches the client: the connection is cut after
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(
            pump(client_in, server_out, held=False), pump(server_in, client_out, held=True)
        )
