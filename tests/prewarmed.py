"""A Python command line tool run many times without paying its start-up each time.

docker-compose (Debian's, a Python program) spends most of a ``config`` run
importing itself: about 0.45 CPU-s a run, of which the check is about 0.1, and
the compose tests run it about five times per combination. ``Prewarmed`` starts
the tool's own interpreter once, imports the tool's entry point there, and for
every command forks that process: the child sets the command's working
directory, environment and arguments and runs the tool's script as its
``__main__``, exactly as the command line would, with its output and exit status
reported back. Each command runs in a fresh child, so no state passes from one
command to the next; only the imports are shared.

A tool that is not a Python script (a binary, or a wrapper in another language)
runs as a plain subprocess.
"""

from __future__ import annotations

import atexit
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from helpers import clean_env, failure_message, run

# Runs in the tool's interpreter: sys.argv[1] is the script. One JSON request per
# line on stdin ({"args", "cwd", "env"}), one JSON answer per line on stdout.
_SERVER = r"""
import importlib.metadata, json, os, runpy, sys, tempfile

script = sys.argv[1]
name = os.path.basename(script)
for entry in importlib.metadata.entry_points(group="console_scripts", name=name):
    try:
        entry.load()  # the imports every run shares
    except Exception:
        pass
requests, answers = sys.stdin, os.fdopen(os.dup(1), "w")
for line in requests:
    request = json.loads(line)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [script, *request["args"]]
            try:
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as exit:
                if exit.code is None or isinstance(exit.code, int):
                    code = exit.code or 0
                else:
                    print(exit.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    output = []
    for stream in (out, err):
        stream.seek(0)
        output.append(stream.read().decode("utf-8", "replace"))
        stream.close()
    returncode = os.waitstatus_to_exitcode(status)
    answers.write(json.dumps({"returncode": returncode, "stdout": output[0], "stderr": output[1]}))
    answers.write("\n")
    answers.flush()
"""


def python_script_interpreter(executable: str) -> str | None:
    """The interpreter of a Python script (its ``#!`` line), or None for anything else."""
    with Path(executable).open("rb") as file:
        first = file.readline(200)
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if words and Path(words[0]).name == "env":
        words = words[1:]
    if not words or not Path(words[0]).name.startswith("python"):
        return None
    return words[0]


class Prewarmed:
    """One tool (a Python console script), imported once, run per command in a fork."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.interpreter = python_script_interpreter(executable)
        self._server: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self._server is None or self._server.poll() is not None:
            assert self.interpreter is not None
            self._server = subprocess.Popen(
                [self.interpreter, "-c", _SERVER, self.executable],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=clean_env(),
                text=True,
            )
            atexit.register(self.close)
        return self._server

    def run(
        self,
        args: Sequence[str | Path],
        *,
        cwd: Path,
        env: Mapping[str, str],
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``helpers.run`` of ``[executable, *args]``, with the imports already done."""
        command = [self.executable, *(str(arg) for arg in args)]
        if self.interpreter is None:
            return run(command, cwd=cwd, env=env, check=check)
        server = self._start()
        assert server.stdin is not None
        assert server.stdout is not None
        request = {"args": command[1:], "cwd": str(cwd), "env": dict(env)}
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        if not line:
            pytest.fail(f"the server running {self.executable} exited {server.wait()}")
        answer = json.loads(line)
        done = subprocess.CompletedProcess(
            command, answer["returncode"], answer["stdout"], answer["stderr"]
        )
        if check and done.returncode != 0:
            pytest.fail(failure_message(done, cwd))
        return done

    def close(self) -> None:
        """Stop the server this object started (its stdin closes, it exits)."""
        if self._server is not None and self._server.poll() is None:
            assert self._server.stdin is not None
            self._server.stdin.close()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
