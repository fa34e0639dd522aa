"""What the multi-process integration tests share: failures, logging, free
loopback ports, finding processes by their command line and a main() that
runs a test in a temporary folder (kept on failure when CLMAE_KEEP_TEST_FILES
is set)."""

import os
import random
import shutil
import socket
import sys
import tempfile


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def logger(name):
    """A function printing `[name] message`, flushed (ctest shows it live)."""
    def log(message):
        print(f"[{name}] {message}", flush=True)
    return log


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count):
    """`count` distinct loopback ports that bind now, drawn at random from
    below the kernel's ephemeral range. For a program that binds several
    ports one after another (weed does): a port from free_port() can be
    taken meanwhile as the source port of any outgoing connection, the
    program's own included; ports below the ephemeral range cannot."""
    high = _ephemeral_low()
    low = max(1024, high - 20000)
    ports = []
    while len(ports) < count:
        port = random.randrange(low, high)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def processes(executable, match=lambda argv: True):
    """pid -> argv of the running processes whose argv[0] ends with
    `executable` and whose argv (a list of str) satisfies `match`."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and argv[0].endswith(executable) and match(argv):
            out[int(pid)] = argv
    return out


def run_in_temp_dir(name, run, *args):
    """Calls run(*args, work) in a fresh folder; 0 on success, 1 on a
    TestFailure (printed). The folder is removed unless kept for a failure."""
    work = tempfile.mkdtemp(prefix=f"clmae-{name}-")
    try:
        run(*args, work)
        return 0
    except TestFailure as e:
        print(f"[{name}] FAILED: {e}", file=sys.stderr, flush=True)
        if os.environ.get("CLMAE_KEEP_TEST_FILES"):
            print(f"[{name}] files kept in {work}", file=sys.stderr)
            work = None
        return 1
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
