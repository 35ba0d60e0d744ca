"""bench run --scheduler against addresses and servers that are not a usable Dask scheduler: a malformed
address or a refused connection fails at once; a server that stays silent, sends a text banner, or
greets like Dask and then stalls or garbles fails within about scheduler_timeout with one line on
stderr (exit 2) and no 'Exception ignored' noise from distributed's Client.__del__.

The fake servers are threads on 127.0.0.1 with an OS-assigned port."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from imcodec.errors import UsageError


def _config(tmp_path, timeout: float) -> object:
    p = tmp_path / "bench.toml"
    p.write_text(f"""
[bench]
cache_dir = "{tmp_path / 'cache'}"
scheduler_timeout = {timeout}

[[sequences]]
name = "s"
synth = {{ shape = "sphere", bits = 5, frames = 1, seed = 1, color = true }}

[codecs.o]
codec = "octree"
rates = {{ a = {{ scale = 0.5 }} }}
""")
    return p


class FakeServer:
    """Accepts connections on 127.0.0.1:0, sends ``greeting`` to each and keeps them open."""

    def __init__(self, greeting: bytes = b""):
        self.greeting = greeting
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            if self.greeting:
                c.sendall(self.greeting)
            self.conns.append(c)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


def _cli(tmp_path, scheduler: str, timeout: float, limit: float = 14.0):
    """Run ``imcodec bench run`` in a subprocess: (exit code, stderr, seconds); fails (does not hang) when
    the command runs past ``limit`` seconds."""
    cfg = _config(tmp_path, timeout)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "imcodec.cli", "bench", "run", str(cfg), "-o",
                               str(tmp_path / "res.csv"), "--scheduler", scheduler],
                              capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bench run --scheduler {scheduler} still running after {limit} s")
    return proc.returncode, proc.stderr, time.monotonic() - t0


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("imcodec: error: "), err
    assert "Exception ignored" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("address", ["tcp://", "tcp://::", "inproc://foo", "tcp://127.0.0.1", "tcp://:8786",
                                     "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:x",
                                     "ucx://127.0.0.1:8786", "tcp://[::1:8786", "127.0.0.1:8786"])
def test_malformed_address_fails_at_once(tmp_path, address):
    from imcodec.bench.runner import run

    cfg = _config(tmp_path, 5)
    t0 = time.monotonic()
    with pytest.raises(UsageError, match="expected an address such as tcp://HOST:8786"):
        run(cfg, out=tmp_path / "res.csv", scheduler=address)
    assert time.monotonic() - t0 < 2.0
    assert not (tmp_path / "cache").exists() and not (tmp_path / "res.csv").exists()


def test_address_forms_accepted():
    from imcodec.bench.executors import parse_scheduler_address

    assert parse_scheduler_address("tcp://10.0.0.5:8786") == ("tcp", "10.0.0.5", 8786)
    assert parse_scheduler_address("tls://sched.example.org:1") == ("tls", "sched.example.org", 1)
    assert parse_scheduler_address("tcp://[::1]:65535") == ("tcp", "::1", 65535)


def test_connection_refused_is_quick(tmp_path):
    pytest.importorskip("distributed")
    from imcodec.bench.runner import run

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(UsageError, match="connection refused"):
        run(_config(tmp_path, 8), out=tmp_path / "res.csv", scheduler=f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 3.0
    assert not (tmp_path / "cache").exists()


def test_silent_server_times_out(tmp_path):
    pytest.importorskip("distributed")
    with FakeServer() as srv:
        code, err, seconds = _cli(tmp_path, srv.address, 1.5)
    assert code == 2 and "sent nothing within 1.5 s" in _one_line(err)
    assert seconds < 1.5 + 6  # start-up of the command included


def test_text_banner_is_not_a_scheduler(tmp_path):
    pytest.importorskip("distributed")
    with FakeServer(b"SSH-2.0-OpenSSH_9.6 banner text that is not a dask message\r\n") as srv:
        code, err, seconds = _cli(tmp_path, srv.address, 3)
    assert code == 2 and "is not a Dask scheduler" in _one_line(err) and "SSH-2.0-OpenSSH_9.6" in err
    assert "out of memory" not in err
    assert seconds < 3 + 6


def test_dask_greeting_then_silence_times_out(tmp_path):
    """Passes the greeting check, then never finishes the handshake: distributed's handshake read has
    no timeout of its own, so only the watchdog stops it."""
    pytest.importorskip("distributed")
    with FakeServer(struct.pack("<Q", 58)) as srv:
        code, err, seconds = _cli(tmp_path, srv.address, 1.5)
    assert code == 2 and "did not complete the Dask handshake within 1.5 s" in _one_line(err)
    assert seconds < 1.5 + 6


def test_dask_greeting_then_garbage(tmp_path):
    pytest.importorskip("distributed")
    with FakeServer(struct.pack("<Q", 40) + b"\xff" * 40) as srv:
        code, err, seconds = _cli(tmp_path, srv.address, 3)
    assert code == 2 and "is it a Dask scheduler?" in _one_line(err)
    assert seconds < 3 + 6
