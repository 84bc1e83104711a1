"""Run a function in a forked child process under memory, CPU and wall-clock limits.

A reader fed a hostile file may segfault, allocate gigabytes or spin: run in the test process, any
of these kills or stalls the whole suite. `run_limited` forks, lowers the child's limits, runs the
function there and reports what happened, so a regression fails one test with a readable outcome.

    outcome = run_limited(read_torch_bin, "bomb.bin", memory_bytes=256 << 20)
    assert outcome.status == "error" and outcome.error_type == "ValueError", outcome

The child inherits the test process as it is (fork, no re-import), so the function and its
arguments need not be picklable; only the outcome travels back, as JSON through a pipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import select
import signal
import time

GIB = 1 << 30


@dataclasses.dataclass
class Outcome:
    """What happened in the child.

    Attributes:
        status: "ok" (returned), "error" (raised), "signal" (killed by a signal, e.g. SIGSEGV or SIGXCPU),
            "timeout" (still running at the wall-clock limit; killed) or "died" (exited without a report).
        error_type: the exception's class name when status is "error".
        message: the exception's message (first 2000 characters), or a description of the death.
        memory_error: a MemoryError was raised somewhere on the way (the exception's context chain), i.e.
            the function tried to go past the memory cap even if it then reported something else.
        rss_growth: peak resident memory of the child minus its resident memory at the start, bytes.
        signal: the signal number when status is "signal".
        seconds: wall-clock time of the child.
    """

    status: str
    error_type: str | None = None
    message: str = ""
    memory_error: bool = False
    rss_growth: int = 0
    signal: int | None = None
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        """Success, or a ValueError/OSError (subclasses included) with no MemoryError on the way."""
        documented = self.status == "ok" or (self.status == "error" and self.error_type in ("ValueError", "OSError"))
        return documented and not self.memory_error


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _error_class(exc):
    """"ValueError" / "OSError" for any subclass of them (UnsafeCheckpointError, FileNotFoundError...)."""
    for base in (ValueError, OSError):
        if isinstance(exc, base):
            return base.__name__
    return type(exc).__name__


def _memory_error_on_the_way(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _child(write_fd, function, args, kwargs, memory_bytes, cpu_seconds):
    start_rss = _status_kib("VmRSS")
    # The address-space cap is relative to what the child inherited (the test process may hold
    # TensorFlow's ~1.4 GB of mappings): the function itself may add at most memory_bytes.
    address_space = _status_kib("VmSize") + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    start = time.monotonic()
    report = {"status": "ok"}
    try:
        function(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        report = {"status": "error", "error_type": _error_class(exc), "message": f"{type(exc).__name__}: {exc}"[:2000],
                  "memory_error": _memory_error_on_the_way(exc)}  # fmt: skip
    report["rss_growth"] = _status_kib("VmHWM") - start_rss
    report["seconds"] = time.monotonic() - start
    data = json.dumps(report).encode()
    while data:
        data = data[os.write(write_fd, data) :]


def run_limited(function, *args, memory_bytes=GIB + GIB // 2, cpu_seconds=20, wall_seconds=30, **kwargs) -> Outcome:
    """Call ``function(*args, **kwargs)`` in a forked child with limits and report how it ended.

    Args:
        function: any callable (it runs in a copy of this process).
        *args, **kwargs: its arguments.
        memory_bytes: int. Address space the child may add to what it inherited (RLIMIT_AS).
        cpu_seconds: int. CPU time of the child (RLIMIT_CPU; SIGXCPU when exceeded).
        wall_seconds: float. The parent kills the child with SIGKILL after this long.

    Returns:
        Outcome.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the test process (no pytest teardown, no atexit)
        code = 0
        try:
            os.close(read_fd)
            _child(write_fd, function, args, kwargs, memory_bytes, cpu_seconds)
        except BaseException:  # noqa: BLE001 - the report could not be written
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    started, chunks, timed_out = time.monotonic(), [], False
    try:
        while True:
            left = started + wall_seconds - time.monotonic()
            if left <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - started
    if timed_out:
        return Outcome("timeout", message=f"still running after {wall_seconds} s", seconds=seconds)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return Outcome("signal", message=f"killed by {signal.Signals(number).name}", signal=number, seconds=seconds)
    if not chunks:
        return Outcome("died", message=f"exited with status {os.WEXITSTATUS(status)} and no report", seconds=seconds)
    return Outcome(**json.loads(b"".join(chunks)))
