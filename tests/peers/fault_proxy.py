#!/usr/bin/python3
"""A fault-injecting TCP proxy for referrald's peer-fault tests.

It sits between referrald and a REAL peer (aiosmtpd, hfaxd) on 127.0.0.1 and
is switched at run time through a control port, one command per line, each
answered with one line ("ok ..." or "error ..."):

  pass          forward both ways (the peer as it is)
  down          close the listener: new connections are refused; connections
                already open are cut (the peer's host went away)
  hang          accept, never send a byte, never close: what the client sends
                is read and thrown away, so only the client's own deadline
                ends the session
  drop N        forward the client's first N segments (one read each) to the
                peer, then cut both connections without passing on another
                byte of the peer's answer. For a line protocol the client
                waits for each reply, so a segment is a command; once TLS has
                started (SMTP STARTTLS) the proxy sees only records and N
                counts those, which is why the SMTP tests choose N from a
                recorded session ("stats" below), not from the command list.
  drop-at WORD  forward until the client's first segment that starts with
                WORD (plaintext protocols only), forward that one too, then
                cut as for drop N: the peer has acted on the command but the
                client never hears its reply (the case that may repeat a send)
  reply TEXT    accept, send TEXT + CRLF as the greeting, close. A mock: it is
                used only where the real peer cannot be made to answer a
                temporary failure on demand (the HylaFAX client protocol has
                no such switch); TEXT is a protocol-correct 4xx reply.
  stats         one JSON line: the mode, connections accepted per mode,
                client segments of the last finished forwarded session
  quit          stop the proxy

A new mode applies to connections already open too, as it would if the
peer itself changed: under `hang` they stop forwarding (both ways) and wait
for the client's deadline; `down`, `drop`, `drop-at` and `reply` cut them
(a client's cached connection must not slip past the fault); `pass` leaves
them as they are. Prints "READY <port> <control-port>" once both listen.
Run it with /usr/bin/python3 (Debian's).
"""

import argparse
import asyncio
import json
import signal
import sys


class Session:
    def __init__(self):
        self.stalled = False  # set by `hang`: forward nothing more, close nothing


class Proxy:
    def __init__(self, listen_port, upstream_port):
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.arg = None
        self.server = None
        self.sessions = {}  # client writer -> Session, for every open connection
        self.accepted = {}
        self.last_segments = None
        self.stopped = asyncio.Event()

    async def listen(self):
        if self.server is None:
            self.server = await asyncio.start_server(self.on_client, "127.0.0.1", self.listen_port)

    async def unlisten(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def cut_all(self):
        for writer in list(self.sessions):
            abort(writer)

    def stall_all(self):
        for session in self.sessions.values():
            session.stalled = True

    async def on_client(self, reader, writer):
        mode, arg = self.mode, self.arg
        self.accepted[mode] = self.accepted.get(mode, 0) + 1
        session = Session()
        self.sessions[writer] = session
        cut = False
        try:
            if mode == "hang":
                while await reader.read(65536):
                    pass
            elif mode == "reply":
                writer.write(arg.encode() + b"\r\n")
                await writer.drain()
            else:
                cut = await self.forward(reader, writer, mode, arg, session)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sessions.pop(writer, None)
            if cut:
                abort(writer)
            else:
                close(writer)

    async def forward(self, client_reader, client_writer, mode, arg, session):
        """Returns True when the session was cut (drop, drop-at)."""
        try:
            peer_reader, peer_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return False  # the real peer is down: the client sees the connection close
        cut = asyncio.Event()
        segments = 0

        async def client_to_peer():
            nonlocal segments
            while not cut.is_set():
                data = await client_reader.read(65536)
                if not data:
                    break
                if session.stalled:
                    continue
                segments += 1
                peer_writer.write(data)
                await peer_writer.drain()
                if (mode == "drop" and segments >= arg) or (mode == "drop-at" and data.startswith(arg)):
                    cut.set()
            if not cut.is_set() and peer_writer.can_write_eof():
                peer_writer.write_eof()

        async def peer_to_client():
            while not cut.is_set():
                data = await peer_reader.read(65536)
                if not data or cut.is_set():
                    break
                if session.stalled:
                    continue
                client_writer.write(data)
                await client_writer.drain()

        tasks = [asyncio.ensure_future(client_to_peer()), asyncio.ensure_future(peer_to_client())]
        try:
            # Either direction ending ends the session; a cut ends it at once.
            waiter = asyncio.ensure_future(cut.wait())
            await asyncio.wait(tasks + [waiter], return_when=asyncio.FIRST_COMPLETED)
            if not cut.is_set():
                await asyncio.wait(tasks + [waiter], timeout=1, return_when=asyncio.ALL_COMPLETED)
            waiter.cancel()
        finally:
            for t in tasks:
                t.cancel()
            if cut.is_set():
                # The client loses the connection at once; the peer gets the
                # time to act on what it was sent and answer (into the void),
                # then an orderly close: the peer has done the work, the
                # client cannot know.
                abort(client_writer)
                try:
                    await asyncio.wait_for(peer_reader.read(65536), 2)
                except (asyncio.TimeoutError, ConnectionError, OSError):
                    pass
                close(peer_writer)
            else:
                close(peer_writer)
                self.last_segments = segments
        return cut.is_set()

    async def control(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                answer = await self.command(line.decode().strip())
                writer.write((answer + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            close(writer)

    async def command(self, line):
        word, _, rest = line.partition(" ")
        if word == "pass":
            self.mode, self.arg = word, None
            await self.listen()
        elif word == "hang":
            self.mode, self.arg = word, None
            await self.listen()
            self.stall_all()
        elif word == "down":
            self.mode, self.arg = word, None
            await self.unlisten()
            self.cut_all()
        elif word == "drop" and rest.isdigit() and int(rest) > 0:
            self.mode, self.arg = word, int(rest)
            await self.listen()
            self.cut_all()
        elif word == "drop-at" and rest:
            self.mode, self.arg = word, rest.encode()
            await self.listen()
            self.cut_all()
        elif word == "reply" and rest[:1] == "4":
            self.mode, self.arg = word, rest
            await self.listen()
            self.cut_all()
        elif word == "stats":
            return json.dumps({"mode": self.mode, "accepted": self.accepted, "last_segments": self.last_segments})
        elif word == "quit":
            self.stopped.set()
        else:
            return "error unknown command: " + line
        return "ok " + self.mode


def close(writer):
    try:
        writer.close()
    except (ConnectionError, OSError, RuntimeError):
        pass


def abort(writer):
    """Closes with RST, as a crashed peer or a broken path would."""
    try:
        writer.transport.abort()
    except (ConnectionError, OSError, RuntimeError, AttributeError):
        pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args()

    proxy = Proxy(args.port, args.upstream)
    await proxy.listen()
    control = await asyncio.start_server(proxy.control, "127.0.0.1", args.control)
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, proxy.stopped.set)
    print("READY %d %d" % (args.port, args.control), flush=True)
    await proxy.stopped.wait()
    control.close()
    await proxy.unlisten()
    proxy.cut_all()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
