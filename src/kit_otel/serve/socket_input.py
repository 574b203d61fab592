"""serve's socket input: the Unix socket and loopback TCP listeners, one `Connection` per
bridge or Python source, NDJSON lines routed to the stream of their KIT process, and the limits
that keep one client from starving or blinding the others (lines per second, processes and
sessions per connection, bad lines in a row, socket-only streams)."""

from __future__ import annotations

import logging
import os
import selectors
import socket
import stat
import time
from pathlib import Path

from kit_otel.config import Settings
from kit_otel.model.decoder import DecodeError
from kit_otel.serve.options import ServeError
from kit_otel.serve.spool_directory import private_dir
from kit_otel.sources.spool import decode_item, MAX_SEQ_JUMP, seq_jump_error, Stream

log = logging.getLogger("kit_otel.serve")


class Connection:
    __slots__ = ("sock", "peer", "buf", "lines", "bad_in_row", "rejected", "pids", "sessions",
                 "window_start", "window_lines")

    def __init__(self, sock: socket.socket, peer: str):
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.lines = 0
        self.bad_in_row = 0
        self.rejected = 0
        self.pids: set[int] = set()
        self.sessions: set[tuple[int, str]] = set()
        self.window_start = 0.0  # the rate limit's current one-second window
        self.window_lines = 0


def resolve_socket_path(settings: Settings) -> str:
    """`socket_path`: "" or "off" → none; "auto" → where the bridge looks by default."""
    value = settings.socket_path.strip()
    if value in ("", "off", "none"):
        return ""
    if value == "auto":
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime:
            return os.path.join(runtime, "kit-otel", "bridge.sock")
        spool = os.path.expanduser(settings.spool_dir)
        return os.path.join(os.path.dirname(spool.rstrip("/")), "bridge.sock")
    return os.path.expanduser(value)


class SocketInput:
    """The socket part of `Server` (serve/daemon.py), whose state these methods use."""

    def _listen(self) -> None:
        path = resolve_socket_path(self.settings)
        if path:
            parent = Path(path).parent
            private_dir(parent, "socket directory")
            if os.path.lexists(path):
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    raise ServeError(f"socket path {path} exists and is not a socket")
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                    raise ServeError(f"another process is listening on {path}")
                except (ConnectionRefusedError, FileNotFoundError):
                    os.unlink(path)  # stale socket of a daemon that died
                finally:
                    probe.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old_umask = os.umask(0o177)  # the socket is 0600 from the moment it exists
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            sock.listen(64)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "listener")
            self._listeners.append(sock)
            self.socket_path = path
        if self.settings.tcp_port:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.settings.tcp_port))
            except OSError as exc:
                sock.close()
                raise ServeError(f"cannot listen on 127.0.0.1:{self.settings.tcp_port}: "
                                 f"{exc.strerror}") from None
            sock.listen(64)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, "listener")
            self._listeners.append(sock)
            self.tcp_port = sock.getsockname()[1]

    def _poll_sockets(self, timeout: float) -> None:
        for key, _mask in self._selector.select(timeout):
            if key.data is None:  # the wake-up pipe
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            elif key.data == "listener":
                self._accept(key.fileobj)
            elif key.data == "sidecars":  # a session directory changed: read its sidecar now
                self.sidecars.poll()
            else:
                self._read(key.data)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer = f"unix:{self.socket_path}" if sock.family == socket.AF_UNIX else \
            f"tcp:{address[0]}:{address[1]}"
        if len(self._connections) >= self.options.max_connections:
            log.warning("socket client %s refused: %d connections already open", peer,
                        len(self._connections))
            sock.close()
            return
        sock.setblocking(False)
        conn = Connection(sock, f"{peer}#{sock.fileno()}")
        self._connections[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        log.debug("socket client %s connected", conn.peer)

    def _disconnect(self, conn: Connection, reason: str = "") -> None:
        if reason:
            log.warning("socket client %s: %s; disconnected", conn.peer, reason)
        else:
            log.debug("socket client %s disconnected", conn.peer)
        self._connections.pop(conn.sock.fileno(), None)
        self._throttled.pop(conn.sock.fileno(), None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _read(self, conn: Connection) -> None:
        now = time.monotonic()
        if now - conn.window_start >= 1.0:
            conn.window_start, conn.window_lines = now, conn.lines
        for _ in range(16):  # at most 1 MiB per connection per round: others get their turn
            if conn.lines - conn.window_lines >= self.options.max_lines_per_connection_s:
                self._throttle(conn, conn.window_start + 1.0)
                return
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._disconnect(conn, f"read error: {exc.strerror}")
                return
            if not data:  # a partial last line is dropped: the spool file has it
                self._disconnect(conn)
                return
            conn.buf += data
            start = 0
            while True:
                newline = conn.buf.find(b"\n", start)
                if newline < 0:
                    break
                line = bytes(conn.buf[start: newline + 1])
                start = newline + 1
                if not self._socket_line(conn, line):
                    return
            if start:
                del conn.buf[:start]
            if len(conn.buf) > self.max_bytes:
                error = DecodeError(conn.peer, conn.lines + 1, "", f"line exceeds the limit of "
                                    f"{self.max_bytes} bytes", "oversize")
                self.rejected += 1
                self.translator.reject(error)
                self._disconnect(conn, f"line {conn.lines + 1} is longer than "
                                 f"{self.max_bytes} bytes")
                return

    def _socket_line(self, conn: Connection, line: bytes) -> bool:
        """One line from a socket client; False when the client was disconnected."""
        conn.lines += 1
        item = decode_item(line, conn.peer, conn.lines, self.max_bytes, from_socket=True)
        if item is None:
            return True
        if item.error is not None:
            return self._socket_reject(conn, item.error)
        event = item.event
        over = self._over_peer_limits(conn, event)
        stream = None if over else self._route(event)
        if stream is None:
            return self._socket_reject(conn, DecodeError(
                conn.peer, conn.lines, "pid", over or "too many KIT processes are followed over "
                f"sockets (limit {self.options.max_socket_streams}, none idle)", "peer_limit"))
        conn.pids.add(event.pid)
        conn.sessions.add((event.pid, event.session_path))
        if not stream.offer(event):
            return self._socket_reject(conn, seq_jump_error(
                conn.peer, conn.lines, event.seq, stream.next_seq,
                f"more than {MAX_SEQ_JUMP} ahead"))
        conn.bad_in_row = 0
        return True

    def _socket_reject(self, conn: Connection, error: DecodeError) -> bool:
        """Count and log (the first five per client) one refused socket line; False when the
        client was disconnected for sending nothing but bad lines."""
        conn.rejected += 1
        conn.bad_in_row += 1
        self.rejected += 1
        self.socket_rejected += 1
        self.translator.reject(error)
        # five per client, fifty in all, then every 1000th (many clients must not flood)
        if conn.rejected <= 5 and self.socket_logged < 50 or self.socket_rejected % 1000 == 0:
            self.socket_logged += 1
            log.warning("socket client rejected line: %s%s", error,
                        f" ({self.socket_rejected} socket lines rejected so far)"
                        if self.socket_logged > 50 else "")
        if conn.bad_in_row >= self.options.bad_lines_before_disconnect:
            self._disconnect(conn, f"{conn.bad_in_row} bad lines in a row")
            return False
        return True

    def _over_peer_limits(self, conn: Connection, event) -> str:
        """Why this client may not speak for this event's process or session ("" if it may):
        one client must not make the daemon hold state for thousands of processes."""
        opts = self.options
        if event.pid not in conn.pids and len(conn.pids) >= opts.max_pids_per_connection:
            return (f"pid {event.pid} would be KIT process number "
                    f"{opts.max_pids_per_connection + 1} on this connection (limit "
                    f"{opts.max_pids_per_connection})")
        if (len(conn.sessions) >= opts.max_sessions_per_connection
                and (event.pid, event.session_path) not in conn.sessions):
            return (f"more than {opts.max_sessions_per_connection} sessions on this connection")
        return ""

    def _route(self, event) -> Stream | None:
        """The stream a socket event belongs to (made for it if its pid has none; None when
        no more socket-only streams may be made)."""
        stream = self.by_pid.get(event.pid)
        if stream is None:
            self._scan()  # the bridge creates its spool file before it connects
            stream = self.by_pid.get(event.pid)
        elif (event.type == "bridge_start" and event.seq == 1 and stream.first_started
              and getattr(event.data, "StartedAt", "") != stream.first_started):
            self._scan()  # a new process with a known pid
            if self.by_pid.get(event.pid) is stream:
                self._supersede(stream)
            stream = self.by_pid.get(event.pid)
        if stream is None:
            if self.socket_streams >= self.options.max_socket_streams \
                    and not self._evict_socket_stream():
                return None
            stream = Stream(f"socket-{event.pid}-{time.time_ns()}", event.pid)
            self._register(stream)
            self.socket_streams += 1
        if stream.socket_only:  # the least recently heard first, for _evict_socket_stream
            self._socket_lru[stream.key] = stream
            self._socket_lru.move_to_end(stream.key)
            log.info("socket: KIT process %d has no spool file: following it over the socket "
                     "only (not durable across restarts)", event.pid)
        return stream

    def _evict_socket_stream(self) -> bool:
        """Make room for a new socket-only stream: forget the one quiet the longest (no open
        turn, nothing waiting). Its spans were handed to the exporter already and its counts
        are in the daemon's totals; only its session state (turn links) goes."""
        oldest = next((s for s in self._socket_lru.values()
                       if s.socket_only and not s.pending_spans and not s.socket_items
                       and not s.socket_unordered and self._quiescent(s)), None)
        if oldest is None:
            return False
        log.debug("socket: forgetting quiet KIT process %d to follow another", oldest.pid)
        self._remove(oldest, "socket-only stream limit reached; it was the quietest")
        return True

    def _throttle(self, conn: Connection, until: float) -> None:
        """Stop reading a client over its rate until `until` (the kernel's buffers, then the
        client's own writes, hold what it sends meanwhile: nothing is dropped here)."""
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            return
        self._throttled[conn.sock.fileno()] = (until, conn)
        self.throttles += 1

    def _resume_throttled(self, now: float) -> None:
        for fd, (until, conn) in list(self._throttled.items()):
            if now >= until:
                del self._throttled[fd]
                if fd in self._connections:
                    self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._listeners.clear()
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
            self.socket_path = ""
