"""One committer per machine: the web processes' submissions stored by a process of its own.

With a committer thread in each web process (formrelay.ingest), the processes' batches
took SQLite's write lock in turn, or PostgreSQL's commits one each, and every batch held
the lock far longer than its statements take: each driver call gives up the GIL, and
getting it back from the request threads waited on them. Here each web process's
committer thread hands its batch to this process over a Unix socket and waits for the
answer; this process, with no request threads, stores what every web process sent in one
transaction (the same code: GroupCommit.store_now) and answers each. The promise is
unchanged: a web process answers 2xx only once this process has said that the
transaction holding the submission committed.

The first web process that finds no committer takes the address (binds the socket) and
starts one (`python -m formrelay.committer`, the socket passed down, the settings on its
stdin); another finding the address taken starts none, and its connection waits in the
socket's backlog until the committer accepts it. The committer exits once no
web process has been connected for IDLE_SECONDS. A web process that cannot reach a
committer stores its batch itself, as before, so that the service never depends on this
process being up; a batch whose answer was lost (the committer killed during its
transaction) answers 503, as a commit that timed out does: it may have been stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import hmac
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge, wait
from pathlib import Path
from typing import Any

log = logging.getLogger("formrelay.committer")

# The committer exits after this long with no web process connected: long enough to stay
# through a server's restart, short enough not to hold a finished script's output open
# (the committer writes its log to the web process's stdout and stderr).
IDLE_SECONDS = 2.0
# A web process starts a committer at most this often (one may be starting already).
SPAWN_EVERY_SECONDS = 5.0
# A notice that forms changed waits at most this long for the committer.
NOTICE_SECONDS = 5.0
# Connecting, and proving the key both ways, take at most this long: a committer (or
# anything else at its address) that does not answer never holds a web process up.
HANDSHAKE_SECONDS = 5.0


def address(database: str, settings: Any) -> str:
    """The committer's socket: in Linux's abstract namespace (no file to leave behind, no
    path length limit), named for the database, the settings (secrets included) and this
    code. Web processes only ever hand their submissions to a committer that stores them
    as they would: after a deploy or a changed setting the new web processes start their
    own, and the old one exits once its web processes have."""
    digest = hashlib.sha256(pickle.dumps((database, settings, _code_version()))).hexdigest()
    return f"\0formrelay-committer-{digest[:32]}"


@functools.cache
def _code_version() -> tuple[int, ...]:
    """When each of formrelay's modules last changed."""
    return tuple(sorted(p.stat().st_mtime_ns for p in Path(__file__).parent.rglob("*.py")))


def authkey(secret_key: str) -> bytes:
    """What a web process proves it knows (multiprocessing's HMAC challenge) before the
    committer reads anything from it: the abstract namespace has no file permissions."""
    return hmac.new(secret_key.encode(), b"formrelay.committer", hashlib.sha256).digest()


def connect(where: str, key: bytes) -> Connection:
    """A connection to the committer at `where`, each side having proved it knows `key`
    (as multiprocessing's Client, but within HANDSHAKE_SECONDS)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _timeouts(sock, HANDSHAKE_SECONDS)
        sock.connect(where)
    except BaseException:
        sock.close()
        raise
    return _handshake(sock, key, server=False)


def _accept(server: socket.socket, key: bytes) -> Connection:
    sock, _ = server.accept()
    _timeouts(sock, HANDSHAKE_SECONDS)
    return _handshake(sock, key, server=True)


def _handshake(sock: socket.socket, key: bytes, *, server: bool) -> Connection:
    # In the order of multiprocessing's Listener.accept and Client.
    connection = Connection(sock.detach())
    try:
        if server:
            deliver_challenge(connection, key)
            answer_challenge(connection, key)
        else:
            answer_challenge(connection, key)
            deliver_challenge(connection, key)
        with socket.socket(fileno=connection.fileno()) as same:  # the timeouts off again
            _timeouts(same, 0)
            same.detach()
    except BaseException:
        connection.close()
        raise
    return connection


def _timeouts(sock: socket.socket, seconds: float) -> None:
    # SO_RCVTIMEO/SO_SNDTIMEO bound each blocking read and write of the descriptor (the
    # Connection reads it directly); 0 is no bound.
    value = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class Unanswered(Exception):
    """The committer took the batch and did not answer: it may have been stored."""


class RemoteCommitter:
    """A web process's end: hands batches to the machine's committer, starting one when
    there is none. Used by the process's group commit thread alone."""

    def __init__(self, settings: Any, database: str, wait_seconds: float) -> None:
        self.settings = settings
        self.database = database  # the engine's URL, as the web process resolved it
        self.address = address(database, settings)
        self.authkey = authkey(settings.secret_key)
        self.wait_seconds = wait_seconds
        self._connection: Connection | None = None
        self._pid = 0
        self._spawned_at = -SPAWN_EVERY_SECONDS
        self._changes_sent_at = 0.0
        self.idle_seconds = IDLE_SECONDS  # the committer's, once this process starts one
        self.child: subprocess.Popen[bytes] | None = None  # the last committer it started

    def start(self) -> None:
        """Connect to the machine's committer, starting one when none answers: at a web
        process's start, so that the first submissions find it running. The connection
        stays open (the committer lives while web processes are connected to it)."""
        self._connect(spawn=True)

    def store(self, batch: Sequence[tuple[Any, ...]]) -> list[Any] | None:
        """What became of each (key, prepared submission, its rate limits' windows) of the
        batch, in order, as the committer counted and stored them; None when no committer
        took it (the caller stores it).

        Raises Unanswered when the committer took the batch and its answer was lost.
        """
        return self._ask(list(batch), spawn=True)

    def forms_changed(self) -> None:
        """Tell the committer which forms this process changed, so that its next batch
        reads them again; nothing when there is no committer (nothing cached)."""
        with contextlib.suppress(Unanswered):
            self._ask([], spawn=False, wait_seconds=NOTICE_SECONDS)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None

    def _ask(
        self, batch: list[tuple[Any, ...]], *, spawn: bool, wait_seconds: float | None = None
    ) -> list[Any] | None:
        from .services.outbox import changed_forms_since

        connection = self._connect(spawn=spawn)
        if connection is None:
            return None
        now = time.monotonic()
        message = pickle.dumps(
            (changed_forms_since(self._changes_sent_at), batch), pickle.HIGHEST_PROTOCOL
        )
        try:
            connection.send_bytes(message)
        except OSError:  # gone before it read the batch: none of it was stored
            self.close()
            if spawn:
                self._spawn()  # for the next batch; this one the caller stores
            return None
        self._changes_sent_at = now
        try:
            if not connection.poll(self.wait_seconds if wait_seconds is None else wait_seconds):
                raise Unanswered("the committer did not answer in time")
            results: list[Any] = pickle.loads(connection.recv_bytes())
        except (OSError, EOFError, Unanswered) as exc:
            self.close()  # a late answer must not be taken for the next batch's
            raise Unanswered(f"the committer did not answer: {exc}") from exc
        return results

    def _connect(self, *, spawn: bool) -> Connection | None:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        self._connection = None  # a forked child's copy is its parent's
        try:
            self._connection = connect(self.address, self.authkey)
            self._pid = os.getpid()
        except Exception:  # none there, or not answering, or not with our key
            if spawn:
                self._spawn()
        return self._connection

    def _spawn(self) -> None:
        now = time.monotonic()
        if now - self._spawned_at < SPAWN_EVERY_SECONDS:
            return
        self._spawned_at = now
        # The address is taken here, before the child starts: of web processes starting
        # at once, exactly one starts a committer, and the others' connections wait in
        # the socket's backlog until it accepts them.
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(self.address)
        except OSError:  # another committer has it, or is starting
            server.close()
            return
        try:
            server.listen(64)
            child = subprocess.Popen(
                [sys.executable, "-m", "formrelay.committer"],
                stdin=subprocess.PIPE,
                pass_fds=(server.fileno(),),
                start_new_session=True,  # a Ctrl-C to the server is none to the committer
            )
            assert child.stdin is not None
            child.stdin.write(
                pickle.dumps(
                    (self.settings, self.database, self.idle_seconds, server.fileno()),
                    pickle.HIGHEST_PROTOCOL,
                )
            )
            child.stdin.close()
        except OSError:
            log.warning("starting the committer failed; storing here", exc_info=True)
        else:
            log.info("started the committer (pid %d)", child.pid)
            self.child = child
            threading.Thread(target=child.wait, daemon=True).start()  # reaped when it exits
        finally:
            server.close()  # the child's copy is the committer's


def serve(settings: Any, database: str, idle_seconds: float, listening: int) -> int:
    """Store the batches web processes send to the socket `listening` (a descriptor, bound
    and listening: the web process that started this one took the address) until none has
    been connected for `idle_seconds`. Returns 0."""
    from . import create_app
    from .ingest import group_commit
    from .services.outbox import note_changed_forms
    from .settings import DERIVED

    server = socket.socket(fileno=listening)
    key = authkey(settings.secret_key)
    given = {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if not f.metadata.get(DERIVED)
    }
    # This process stores what it is sent, on the database the web process resolved.
    given.update(committer="thread", database_url=database)
    app = create_app(given, migrations=False)
    group = group_commit(app)
    clients: list[Connection] = []
    guard = threading.Lock()
    wake_r, wake_w = os.pipe()
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            try:
                client = _accept(server, key)
            except Exception:  # a wrong key, a client gone or silent during the handshake
                continue
            with guard:
                clients.append(client)
            os.write(wake_w, b".")

    threading.Thread(target=accept, name="formrelay-committer-accept", daemon=True).start()
    # SIGTERM (a platform stopping everything at once, systemd's whole cgroup): serve the
    # web processes still connected, which are finishing their requests, and exit with
    # the last of them.
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    log.info("committer %d storing for %s", os.getpid(), group.engine.url)
    idle_since = time.monotonic()
    with app.app_context():
        while True:
            with guard:
                watched = list(clients)
            if watched:
                idle_since = time.monotonic()
            elif stopping.is_set() or time.monotonic() - idle_since > idle_seconds:
                break
            ready = wait([*watched, wake_r], timeout=1.0)
            if wake_r in ready:
                os.read(wake_r, 4096)
            asked: list[tuple[Connection, int]] = []
            items: list[tuple[str, Any, Any]] = []
            for client in ready:
                if not isinstance(client, Connection):
                    continue
                try:
                    changed, batch = pickle.loads(client.recv_bytes())
                except (OSError, EOFError):  # its web process is gone
                    with guard:
                        clients.remove(client)
                    client.close()
                    continue
                note_changed_forms(changed)
                asked.append((client, len(batch)))
                items.extend(batch)
            results = group.store_now(items) if items else []
            at = 0
            for client, n in asked:
                with contextlib.suppress(OSError):  # gone: what it sent is stored
                    client.send_bytes(pickle.dumps(results[at : at + n], pickle.HIGHEST_PROTOCOL))
                at += n
    log.info("committer %d: no web process for %.0f s, exiting", os.getpid(), idle_seconds)
    closing.set()
    server.close()
    group.close()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings, database, idle_seconds, listening = pickle.load(sys.stdin.buffer)
    return serve(settings, database, idle_seconds, listening)


if __name__ == "__main__":
    sys.exit(main())
