"""How long the Python client takes to upload a large JSON Lines file to a running server.

    marketplace serve &            # or any deployment
    python bench/client_upload.py --url http://127.0.0.1:8000 --key REQUESTER_KEY [--items 100000]
        [--batch-size 1000] [--runs 3]

Writes `--items` image items to a temporary `.jsonl` file, then per run creates a draft job
and uploads the file with `Client.add_items` (the progress bar on stderr), and prints the
seconds, items per second and the client's own CPU seconds of each run, and the median. The
draft jobs are cancelled after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from marketplace.client import Client

JOB = {
    "title": "upload benchmark",
    "instructions": "-",
    "annotation": {"type": "classification", "labels": ["a", "b"]},
}


def write_items(path: Path, count: int) -> None:
    with path.open("w") as out:
        for n in range(count):
            data = {"image_url": f"https://example.org/images/{n:07d}.jpg", "width": 640, "height": 480}
            out.write(json.dumps({"data": data}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True, help="a requester's key")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    client = Client(args.url, args.key, progress=True)
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "items.jsonl"
        write_items(source, args.items)
        size = source.stat().st_size / 1e6
        for run in range(1, args.runs + 1):
            job = client.create_job(JOB)
            started, cpu = time.perf_counter(), time.process_time()
            upload = client.add_items(job["id"], source, batch_size=args.batch_size)
            seconds.append(time.perf_counter() - started)
            cpu = time.process_time() - cpu
            client.cancel(job["id"])
            assert upload.added == args.items, upload
            print(
                f"run {run}: {upload.added} items ({size:.1f} MB) in {seconds[-1]:.1f} s, "
                f"{upload.added / seconds[-1]:,.0f} items/s, batches of {args.batch_size}, client CPU {cpu:.1f} s"
            )
    median = statistics.median(seconds)
    print(f"median of {len(seconds)}: {median:.1f} s, {args.items / median:,.0f} items/s")


if __name__ == "__main__":
    main()
