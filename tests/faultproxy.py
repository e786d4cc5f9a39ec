"""A TCP proxy on loopback that a test can cut and restore: "the database goes away" without
touching the machine's PostgreSQL (tests/test_faults_store.py).

Not a test module. `cut()` aborts every open connection and stops listening (new connections
are refused); `restore()` listens again on the same port. `cut_on(marker)` cuts everything the
moment a client sends bytes containing `marker` (b"COMMIT": the commit is lost on the way).
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._marker: bytes | None = None
        self.cuts = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, watch: bool) -> None:
            try:
                while data := await src.read(65536):
                    if watch and self._marker is not None and self._marker in data:
                        self._marker = None
                        self.cut_now()
                        return
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._writers -= {writer, up_writer}

    def cut_now(self) -> None:
        """Abort every connection and stop listening (synchronous: usable from inside a pipe)."""
        self.cuts += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def cut(self) -> None:
        self.cut_now()
        await asyncio.sleep(0.05)

    def cut_on(self, marker: bytes) -> None:
        self._marker = marker

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        self.cut_now()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
