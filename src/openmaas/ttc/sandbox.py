"""Run a candidate's Python code against the request's tests, in a subprocess that cannot do harm.

Layers, each enough for the common escape on its own:

* a fresh interpreter (``-I``: no site, no environment, no user paths) in a private temporary
  directory, with an empty environment;
* ``sys.addaudithook`` installed before the candidate's code runs (hooks cannot be removed):
  refuses sockets, subprocesses, ``fork``/``exec``/``system``, ``ctypes``, and any write,
  rename or delete outside the temporary directory;
* resource limits: CPU seconds, address space, file size, open files, and (when the
  sandbox may drop privileges) processes;
* when started as root: its own network namespace (``unshare -n``: no interface but a
  down loopback) and the ``nobody`` user;
* a wall-clock timeout that kills the whole process group (a sleeping loop uses no CPU).

The result is pass/fail plus counts of the test assertions that ran, never the output of
the code (it could echo anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass

_GUARD = r"""
import os, sys
# Loaded before privileges drop: as nobody the interpreter's own library may be unreadable (e.g. under /root).
import typing, math, cmath, collections, collections.abc, itertools, functools, operator, re, string, heapq, bisect
import fractions, decimal, statistics, random, datetime, json, copy, dataclasses, enum, hashlib, array, unittest
if os.geteuid() == 0:  # started as root (in its own network namespace): become nobody before anything else
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
_ROOT = os.path.realpath(os.getcwd())
_DENY = ("socket.", "subprocess.", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
         "os.kill", "os.killpg", "ctypes.", "pty.", "resource.setrlimit", "sys.addaudithook", "os.chdir", "os.chroot",
         "os.setuid", "os.setgid", "winreg.", "_winapi.", "webbrowser.")
_PATHS = {"os.remove": 0, "os.rmdir": 0, "os.rename": 0, "os.mkdir": 0, "os.chmod": 0, "os.chown": 0, "os.link": 1,
          "os.symlink": 1, "os.truncate": 0, "shutil.rmtree": 0, "shutil.copyfile": 1, "shutil.move": 1, "os.utime": 0}

def _inside(path):
    if isinstance(path, int):
        return True
    try:
        full = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return full == _ROOT or full.startswith(_ROOT + os.sep)

def _hook(event, args):
    if event.startswith(_DENY):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writes = (mode and any(c in str(mode) for c in "wax+")) or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes and not _inside(path):
            raise PermissionError("sandbox: writing outside the sandbox directory is not allowed")
    elif event in _PATHS:
        for i, arg in enumerate(args[:2]):
            if isinstance(arg, (str, bytes, os.PathLike)) and not _inside(arg):
                raise PermissionError(f"sandbox: {event} outside the sandbox directory is not allowed")

sys.addaudithook(_hook)
del _hook
"""

_RUNNER = r"""
import sys
passed = 0
src = open("candidate.py").read()
tests = open("tests.py").read()
scope = {"__name__": "candidate"}
exec(compile(src, "candidate.py", "exec"), scope)
exec(compile(tests, "tests.py", "exec"), scope)
checks = [v for k, v in scope.items() if k.startswith("check") and callable(v)]
for name in sorted(k for k, v in scope.items() if k.startswith("test_") and callable(v)):
    scope[name]()
if "check" in scope and "entry_point" in scope:
    scope["check"](scope[scope["entry_point"]])
print("SANDBOX-OK")
"""


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    reason: str  # "ok", "failed", "timeout", "error"


def _limits(cpu_s: int, memory_mb: int) -> None:
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Per user: binds once the child is "nobody" (root ignores it), or for an unprivileged server's own user.
    resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))


def extract_code(text: str) -> str:
    """The code of a response: its last fenced block if it has one, else the whole text."""
    blocks = []
    rest = text
    while "```" in rest:
        _, _, after = rest.partition("```")
        body, found, rest = after.partition("```")
        if not found:
            break
        first, _, code = body.partition("\n")
        blocks.append(code if first.strip().isalpha() or not first.strip() else body)
    return blocks[-1] if blocks else text


def _prepare(files: dict[str, str], root: bool) -> str:
    workdir = tempfile.mkdtemp(prefix="openmaas-sandbox-")
    for name, body in files.items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
            f.write(body)
    if root:
        os.chmod(workdir, 0o777)  # the child runs as nobody and writes its scratch files here
    return workdir


async def _execute(
    files: dict[str, str], timeout_s: float, memory_mb: int, merge_stderr: bool
) -> tuple[int | None, bytes]:
    """Run ``run.py`` among ``files`` in the sandbox: (exit code, or None on timeout; its stdout)."""
    root = os.geteuid() == 0
    unshare = shutil.which("unshare") if root else None
    workdir = await asyncio.to_thread(_prepare, files, root)
    try:
        argv = [sys.executable, "-I", "-S", "-B", "run.py"]
        if unshare:
            argv = [unshare, "--net", "--", *argv]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.DEVNULL,
            preexec_fn=lambda: _limits(max(1, int(timeout_s)), memory_mb),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return None, b""
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode, out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def run_tests(code: str, tests: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run ``tests`` (asserts, ``test_*`` functions, or a HumanEval ``check`` + ``entry_point``) against ``code``."""
    files = {"candidate.py": code, "tests.py": tests, "run.py": _GUARD + _RUNNER}
    code_, out = await _execute(files, timeout_s, memory_mb, merge_stderr=False)
    if code_ is None:
        return SandboxResult(False, "timeout")
    if code_ == 0 and out.strip().endswith(b"SANDBOX-OK"):
        return SandboxResult(True, "ok")
    return SandboxResult(False, "failed")


_SCRIPT = r"""
import sys, traceback
src = open("script.py").read()
try:
    exec(compile(src, "script.py", "exec"), {"__name__": "__main__"})
except SystemExit:
    raise
except BaseException:
    traceback.print_exc(limit=-3)
    sys.exit(1)
"""


@dataclass(frozen=True)
class ScriptResult:
    ok: bool
    output: str  # stdout and stderr, cut at ``max_output`` characters
    reason: str  # "ok", "error", "timeout"


async def run_script(code: str, timeout_s: float = 5.0, memory_mb: int = 512, max_output: int = 16_000) -> ScriptResult:
    """Run ``code`` as a script in the same sandbox and return what it printed (the built-in ``python`` tool)."""
    files = {"script.py": code, "run.py": _GUARD + _SCRIPT}
    status, out = await _execute(files, timeout_s, memory_mb, merge_stderr=True)
    text = out.decode("utf-8", "replace")
    if len(text) > max_output:
        text = text[:max_output] + f"\n[output cut at {max_output} characters]"
    if status is None:
        return ScriptResult(False, text + f"\n[timed out after {timeout_s:g} s]", "timeout")
    if status < 0:  # killed: RLIMIT_CPU sends SIGXCPU, an allocation over RLIMIT_AS usually ends in SIGKILL
        text += f"\n[stopped by signal {-status}: the sandbox's CPU or memory limit]"
    return ScriptResult(status == 0, text, "ok" if status == 0 else "error")
