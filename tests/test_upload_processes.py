"""A web server killed in the middle of an upload leaves a stray file, and the sweep
removes it: the real `formrelay serve`, a real socket, kill -9."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from .servers import free_port, wait_until
from .test_processes import BIN, env_for, run, start, stop, wait_for
from .uploads import PDF


@pytest.mark.slow
def test_a_web_server_killed_mid_upload_leaves_nothing_after_the_sweep(tmp_path: Path) -> None:
    port = free_port()
    env = env_for(tmp_path, FORMRELAY_BASE_URL=f"http://127.0.0.1:{port}")
    formrelay = str(BIN / "formrelay")
    assert run([formrelay, "db", "upgrade"], env, tmp_path).returncode == 0
    created = run(
        [formrelay, "form", "create", "--name", "Jobs", "--to", "hr@example.org"], env, tmp_path
    )
    key = created.stdout.strip().rsplit("/", 1)[1]
    updated = run([formrelay, "form", "update", key, "--files", "on"], env, tmp_path)
    assert updated.returncode == 0, updated.stderr
    uploads = tmp_path / "instance" / "uploads"

    proc = start([formrelay, "serve", "--port", str(port)], env, tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc)
        head = (
            b'--B\r\nContent-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n"
        ) + PDF
        length = len(head) + 5 * 1024 * 1024
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(
            (
                f"POST /f/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
                f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {length}\r\n\r\n"
            ).encode()
            + head
            + b"\x00" * (1024 * 1024)
        )

        def partial() -> list[Path]:
            return [p for p in uploads.rglob("*.part")] if uploads.exists() else []

        wait_until(partial, 10, lambda: "no upload was being written")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        conn.close()
    finally:
        stop(proc)

    [stray] = [p for p in uploads.rglob("*") if p.is_file()]
    assert stray.name.endswith(".part")
    listed = run([formrelay, "submissions", "list"], env, tmp_path)
    assert key not in listed.stdout  # nothing was stored, nothing acknowledged

    # A young file may be an upload whose commit is on its way: the sweep waits an hour.
    assert run([formrelay, "sweep"], env, tmp_path).stdout == (
        "Deleted 0 stored file(s) that no submission names.\n"
    )
    old = time.time() - 2 * 3600
    os.utime(stray, (old, old))
    assert run([formrelay, "sweep"], env, tmp_path).stdout == (
        "Deleted 1 stored file(s) that no submission names.\n"
    )
    assert [p for p in uploads.rglob("*") if p.is_file()] == []
