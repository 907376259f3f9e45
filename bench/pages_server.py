"""Loopback server for the benchmark: N list pages of 20 rows, GBK-encoded, no HTTP charset (only <meta>).

Run as a subprocess by bench_cycle.py and bench_urlwatch.py; prints its port, then serves until killed. It listens
on 127.0.0.1 .. 127.0.0.50 (same port; `--hosts K`: only on the first K of them) and answers from pre-rendered bytes
with asyncio, so that the benchmark measures the client rather than the server. POST /mutate?count=K rewrites K
pages (every row gets a new link and title: 20 new entries per page). With --etag it sends ETags and answers
If-None-Match with 304.
"""

from __future__ import annotations

import asyncio
import socket
import sys

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ETAGS = "--etag" in sys.argv
HOSTS = int(sys.argv[sys.argv.index("--hosts") + 1]) if "--hosts" in sys.argv else 50
version = [0] * N
cache: dict[int, bytes] = {}


def render(i: int) -> bytes:
    rows = []
    for r in range(20):
        n = version[i] * 1000 + r
        rows.append(f'<li><a href="/article/{i}/{n}">关于国家标准《信息安全技术 示例标准{i}-{n}》征求意见稿征求意见的通知——鎔</a>'
                    f'<span class="date">2026-0{1 + r % 9}-1{r % 10}</span></li>')
    html = (f'<html><head><meta charset="gbk"><title>列表 {i}</title></head><body><div class="nav">导航</div>'
            f'<ul class="news-list">{"".join(rows)}</ul><div class="pager">第1页</div></body></html>')
    return html.encode("gbk")


def response(i: int, inm: str | None) -> bytes:
    etag = f'"{i}-{version[i]}"'
    if ETAGS and inm == etag:
        return f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n".encode()
    body = cache.get(i)
    if body is None:
        body = cache[i] = render(i)
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"          # deliberately no charset
    if ETAGS:
        head += f"ETag: {etag}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if int(headers.get("content-length", "0")):
                await reader.readexactly(int(headers["content-length"]))
            if method == "POST" and path.startswith("/mutate"):
                count = int(path.split("count=", 1)[1])
                for i in range(count):
                    k = (i * 37) % N
                    version[k] += 1
                    cache.pop(k, None)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            elif path.startswith("/list/"):
                writer.write(response(int(path[6:]), headers.get("if-none-match")))
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    servers = [await asyncio.start_server(handle, f"127.0.0.{k}", port) for k in range(1, HOSTS + 1)]
    print(port, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
