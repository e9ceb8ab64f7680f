"""A 50 MB upload through the production server, to local storage and to S3 (moto).

    .venv/bin/python bench/uploads.py

`make bench` runs it as its `uploads` section (bench/run.py --only uploads). The Procfile's
web line (granian, WEB_CONCURRENCY workers) serves a form that takes files; one client
streams a multipart body with one 50 MB PDF to it, three times, while the web workers' RSS
is sampled every 5 ms. Measured: the largest RSS growth of a web worker over its RSS after
a small warm-up upload (the goal is under 16 MB: the file is streamed to storage 64 KB at a
time, never held whole), and the upload rate, body bytes over the time from the first byte
sent to the answer (the goal is 100 MB/s or more to local storage; the S3 rate, against
moto in server mode on this machine, is reported).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Database, MailSink, Stack, children, free_port, rss_mb

FILE_MB = 50
CHUNK = 1024 * 1024
BOUNDARY = "formrelaybenchboundary"
PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


def body_parts() -> tuple[bytes, bytes, int]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nAnn\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + FILE_MB * CHUNK + len(tail)


def stream_body(size_mb: int = FILE_MB) -> Iterator[bytes]:
    head, tail, _ = body_parts()
    yield head + PDF_HEAD
    block = bytes(range(256)) * (CHUNK // 256)
    yield block[len(PDF_HEAD) :]
    for _ in range(size_mb - 1):
        yield block
    yield tail


class RSSSampler:
    """The largest RSS of the web server's worker processes while running."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in children(self.master) or [self.master]:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))
            time.sleep(0.005)


def upload(url: str, size_mb: int = FILE_MB) -> float:
    """Seconds to send the body and get the answer."""
    head, tail, _ = body_parts()
    length = len(head) + size_mb * CHUNK + len(tail)
    started = time.perf_counter()
    r = httpx.post(
        url,
        content=stream_body(size_mb),
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(length),
            "Accept": "application/json",
        },
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"upload refused: {r.status_code} {r.text[:300]}")
    return elapsed


def measure(workdir: Path, extra: dict[str, str]) -> dict[str, Any]:
    db = Database.sqlite(workdir)
    with MailSink().running() as mail:
        stack = Stack(workdir, db, mail, extra={"WEB_CONCURRENCY": "1", **extra})
        endpoint = stack.prepare()
        key = endpoint.rsplit("/", 1)[1]
        stack.cli(
            "form", "update", key, "--files", "on", "--max-file-mb", "60",
            "--max-total-mb", "60", "--allowed-types", "pdf",
        )  # fmt: skip
        try:
            web = stack.start_web()
            upload(endpoint, size_mb=1)  # warm-up: imports, connections, first allocations
            time.sleep(0.5)
            workers = children(web.pid) or [web.pid]
            before = {pid: rss_mb(pid) for pid in workers}
            times = []
            with RSSSampler(web.pid) as sampler:
                for _ in range(3):
                    times.append(upload(endpoint))
            growth = max(sampler.peak.get(pid, 0.0) - before[pid] for pid in workers)
            _, _, length = body_parts()
            best = min(times)
            return {
                "file_mb": FILE_MB,
                "seconds": [round(t, 3) for t in times],
                "rate_mb_per_s": length / CHUNK / best,
                "rss_before_mb": max(before.values()),
                "rss_growth_mb": growth,
            }
        finally:
            stack.stop()
            db.drop()


def run(report: dict[str, Any], workdir: Path) -> None:
    (workdir / "local").mkdir()
    report["uploads"] = {"local": measure(workdir / "local", {"FORMRELAY_STORAGE": "local"})}
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        aws = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
        }
        boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="bench")
        (workdir / "s3").mkdir()
        report["uploads"]["s3_moto"] = measure(
            workdir / "s3", {"FORMRELAY_STORAGE": "s3", "FORMRELAY_S3_BUCKET": "bench", **aws}
        )
    finally:
        server.stop()


def targets(report: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    u = report.get("uploads", {})
    out: list[tuple[str, float, str, bool]] = []
    if "local" in u:
        growth, rate = u["local"]["rss_growth_mb"], u["local"]["rate_mb_per_s"]
        out.append(("upload_50mb_web_rss_growth_mb", growth, "<16", growth < 16))
        out.append(("upload_50mb_local_mb_per_s", rate, ">=100", rate >= 100))
    if "s3_moto" in u:
        out.append(("upload_50mb_s3_moto_mb_per_s", u["s3_moto"]["rate_mb_per_s"], "report", True))
        growth = u["s3_moto"]["rss_growth_mb"]
        out.append(("upload_50mb_s3_web_rss_growth_mb", growth, "report", True))
    return out


def main() -> None:
    import tempfile

    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="formrelay-bench-uploads-") as tmp:
        run(report, Path(tmp))
    print(report["uploads"])
    for name, value, goal, ok in targets(report):
        if goal == "report":
            print(f"INFO {name} {value:.3f}")
        else:
            print(f"TARGET {name} {value:.3f} {goal} {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    main()
