"""`python -m scheduler.cli ARGS` as a process forked from a server that has imported the CLI
and the modules most commands import (SQLAlchemy, the models, the spec parser), so a case costs
a fork instead of an interpreter start and its imports (about 1 s here).

What a case sees is a CLI process's: its own pid, working directory, environment, address-space
limit (set in the child before the command runs), stdin from /dev/null, stdout and stderr into
files, and the exit status `python -m scheduler.cli` would give (SystemExit's code; an uncaught
exception prints its traceback and exits 1). The server imports no TensorFlow, and it is started
with the environment the cases share, so what its imports read from the environment is theirs.
A case past its timeout is killed and raises `subprocess.TimeoutExpired`, as `subprocess.run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

# The server: read one JSON request a line, fork, run the command in the child, reply its status.
_SERVER = r"""
import importlib, json, os, resource, signal, sys, time, traceback
cli_main = importlib.import_module("scheduler.cli.main")  # the module: the package names main()
import models.db, scheduler.database, scheduler.spec, scheduler.chunking  # most commands' imports

def child(request):
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_TRUNC)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    if request["limit"]:
        resource.setrlimit(resource.RLIMIT_AS, (request["limit"], request["limit"]))
    sys.argv = [cli_main.__file__, *request["args"]]
    code = 0
    try:
        cli_main.main(list(request["args"]))
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)

replies = os.fdopen(int(sys.argv[1]), "w")
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        replies.close()
        try:
            child(request)
        except BaseException:
            traceback.print_exc()  # the case's stderr if it got that far, else the server's
        finally:
            os._exit(1)
    deadline = time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            reply = {"status": os.waitstatus_to_exitcode(status)}
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            reply = {"timeout": True}
            break
        time.sleep(0.002)
    replies.write(json.dumps(reply) + "\n")
    replies.flush()
"""


class ForkedCli:
    """A server process (started on first use, with `env` and `cwd`) forking one CLI run a call."""

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self._env = dict(env)
        self._cwd = cwd
        self._server: subprocess.Popen[str] | None = None
        self._replies: object = None

    def _start(self) -> subprocess.Popen[str]:
        if self._server is None or self._server.poll() is not None:
            read, write = os.pipe()
            self._server = subprocess.Popen(
                [sys.executable, "-c", _SERVER, str(write)],
                stdin=subprocess.PIPE,
                text=True,
                env=self._env,
                cwd=self._cwd,
                pass_fds=(write,),
            )
            os.close(write)
            self._replies = os.fdopen(read, "r")
        return self._server

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        limit: int = 0,
    ) -> subprocess.CompletedProcess[str]:
        """The CLI run on `args` with the server's environment updated by `env`, under an
        address-space limit of `limit` bytes (0: none)."""
        server = self._start()
        assert server.stdin is not None
        with tempfile.TemporaryDirectory(prefix="forked-cli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            out.touch()
            err.touch()
            request = {
                "args": list(args),
                "env": {**self._env, **(env or {})},
                "cwd": str(self._cwd),
                "stdout": str(out),
                "stderr": str(err),
                "limit": limit,
                "timeout": timeout,
            }
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            line = self._replies.readline()  # type: ignore[attr-defined]
            if not line:
                raise RuntimeError("the forking CLI server died")
            reply = json.loads(line)
            stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        command = ["initsweep", *args]
        if reply.get("timeout"):
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, reply["status"], stdout, stderr)

    def close(self) -> None:
        """Stop the server."""
        if self._server is not None:
            if self._server.stdin is not None:
                self._server.stdin.close()
            self._server.wait(timeout=30)
            self._server = None
        if self._replies is not None:
            self._replies.close()  # type: ignore[attr-defined]
            self._replies = None
