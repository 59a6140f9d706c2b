"""What gunicorn alone costs per request: a WSGI app that only answers, driven like the benchmark.

    python -m bench.gunicorn_floor [--requests 20000] [--concurrency 20] -- [gunicorn options]
    python -m bench.gunicorn_floor -- -w 1 -k gthread --threads 8          # as `marketplace serve`
    python -m bench.gunicorn_floor -- -w 1 -k gthread --threads 8 --access-logfile /dev/null

The app reads the body and answers `{"ok":true}`; the clients (`http.client` threads, one
keep-alive connection each) post a submit-sized JSON body with a bearer key. Prints requests
per second and gunicorn's CPU-ms per request (its master and workers, from psutil): the floor
under `bench/hotpath.py`'s gunicorn figure, which counts two requests a cycle.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

BODY = b'{"answers":[{"item_id":1,"label":"cat"},{"item_id":2,"label":"dog"},{"item_id":3,"label":"cat"}]}'
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer " + "k" * 43}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    body = b'{"ok":true}\n'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("gunicorn", nargs="*", help="gunicorn options (after --)")
    args = parser.parse_args()
    port = free_port()
    here = str(Path(__file__).resolve().parent)
    command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--chdir", here, *args.gunicorn]
    server = subprocess.Popen([*command, "gunicorn_floor:app"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("gunicorn did not start")
                time.sleep(0.1)
        time.sleep(1)  # the workers boot after the master listens
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        left = [args.requests]
        lock = threading.Lock()

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port)
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                connection.request("POST", "/v1/assignments/1/submit", BODY, HEADERS)
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status

        cpu, started = cpu_seconds(processes), time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds, cpu = time.perf_counter() - started, cpu_seconds(processes) - cpu
        print(
            f"{' '.join(args.gunicorn) or 'gunicorn defaults'}: {args.requests / seconds:.0f} requests/s, "
            f"gunicorn {cpu / args.requests * 1000:.3f} CPU-ms per request"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
