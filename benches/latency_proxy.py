#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every HTTP request/response
exchange, to make a local S3 server look like a distant one (benches/compare.sh).

    python3 benches/latency_proxy.py --listen 127.0.0.1:0 --target 127.0.0.1:9000 \
        --delay-ms 20 --port-file /tmp/port

What is delayed: on each client connection, the first bytes the client sends after the
server has answered (or on a new connection) -- that is, the start of each request -- are
held for DELAY milliseconds before being forwarded; the rest of that request (a PUT body)
and the whole response stream through at once. So every request/response exchange costs
DELAY more, whatever its size, as a round trip to a far server does, and bandwidth is not
limited. Not delayed: the TCP connection set-up itself (a real far server adds at least
one more round trip for it, and a TLS handshake more), and a request body sent after an
`Expect: 100-continue` answer is counted as a second exchange (neither S3 client used by
the benchmark sends one for the object sizes involved). Connections are independent, so
concurrent requests on separate connections are delayed in parallel, as on a real
network. With --delay-ms 0 it is a plain forwarder (its own cost is then the baseline).

Prints nothing on success; writes the port it listens on to --port-file (useful with
port 0), then runs until killed (SIGTERM/SIGINT).
"""

import argparse
import asyncio
import os
import signal
import sys

CHUNK = 256 * 1024


async def pipe(reader, writer, delay, state, request_side):
    """Copies reader to writer. On the request side, delays the first bytes of each
    request; on the response side, marks that the next client bytes start a request."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if request_side:
                if state["new_request"] and delay > 0:
                    await asyncio.sleep(delay)
                state["new_request"] = False
            else:
                state["new_request"] = True
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()


async def handle(client_r, client_w, target, delay):
    host, port = target
    try:
        server_r, server_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()
        return
    state = {"new_request": True}
    try:
        await asyncio.gather(
            pipe(client_r, server_w, delay, state, True),
            pipe(server_r, client_w, delay, state, False),
        )
    except asyncio.CancelledError:
        pass  # the proxy is stopping
    finally:
        for w in (client_w, server_w):
            w.close()


def hostport(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on")
    ap.add_argument("--target", required=True, help="HOST:PORT of the server")
    ap.add_argument("--delay-ms", type=float, required=True, help="delay per exchange, ms")
    ap.add_argument("--port-file", help="write the listening port here")
    a = ap.parse_args()
    lhost, lport = hostport(a.listen)
    if not lhost.startswith("127.") and lhost not in ("localhost", "::1"):
        sys.exit("latency_proxy: listens on loopback addresses only")
    target, delay = hostport(a.target), a.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target, delay), lhost, lport, backlog=256
    )
    port = server.sockets[0].getsockname()[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, a.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Close the listener and exit without waiting for open connections (asyncio.run
    # cancels their tasks); Server.wait_closed() could wait on an idle keep-alive client.
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
