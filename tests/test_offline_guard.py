"""The guard used by the end-to-end test really refuses connections (so a clean run proves offline operation)."""

import subprocess
import sys
from pathlib import Path

GUARD = Path(__file__).parent / "offline_guard"


def run_guarded(code: str, log: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(GUARD), "SALAD_NETWORK_LOG": str(log), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_guard_refuses_remote_connections_and_logs_them(tmp_path):
    log = tmp_path / "net.log"
    r = run_guarded("import socket; socket.create_connection(('192.0.2.1', 443), timeout=1)", log)
    assert r.returncode != 0 and "offline guard" in r.stderr
    assert "192.0.2.1" in log.read_text()


def test_guard_refuses_name_lookups(tmp_path):
    log = tmp_path / "net.log"
    r = run_guarded("import socket; socket.getaddrinfo('huggingface.co', 443)", log)
    assert r.returncode != 0 and "huggingface.co" in log.read_text()


def test_guard_allows_loopback(tmp_path):
    log = tmp_path / "net.log"
    code = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1);"
            "c = socket.create_connection(s.getsockname(), timeout=1); c.close()")
    r = run_guarded(code, log)
    assert r.returncode == 0, r.stderr
    assert not log.exists()
