"""Every shell command in README.md runs as written, from a checkout after `make venv`.

Commands come from the README's ```sh blocks (one command per line, `\\` continuing
it; a block's `NAME=value` lines hold for the block's later commands) and from its
transcripts (```-blocks whose lines start with `$ `: the command, then the output it
must print). They run in a directory laid out like the checkout (`.venv` and
`config/` of this one), where a `wsfan serve` started as the README starts it listens
on the README's port, 8888. The exceptions, with their reasons, are `NOT_RUN`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_SCALE
from tests.processes import Server, clean_env, ready

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PORT = 8888  # the README's
COMMAND_TIMEOUT = 120 * TIMEOUT_SCALE  # the load test's three 5 s steps with 2,000 clients
STREAM_SECONDS = 2 * TIMEOUT_SCALE

NOT_RUN = {
    "make run": "serves until stopped; the fixture starts the same server (`wsfan serve`) "
    "for the other commands",
    "make test": "runs this suite",
    "REDIS_URL=redis://redis.internal:6379/0 MONGO_URL=mongodb://mongo.internal/ "
    ".venv/bin/wsfan serve --config config/production.toml --host 0.0.0.0 --port 8000 "
    "--workers 0": "a deployment's command: serves until stopped, against its hosts",
    "make venv && .venv/bin/pip install -e '.[loadtest]'": "installs "
    "packages into the test's own environment, which has the loadtest extra already",
    ".venv/bin/wsfan serve --port 9000 --workers 1 --config config/production.toml": "serves "
    "until stopped, against the Redis and MongoDB hosts the copied example names "
    "(redis.internal, mongo.internal); test_config checks that file",
}
"""Commands not run, as the README writes them (without a trailing comment), with the
reason."""

STREAMS = ("curl -N",)
"""Commands that stream until stopped: run for STREAM_SECONDS, their first line checked."""


@dataclass(frozen=True)
class Command:
    line: str
    block: int  # the README line its block starts on
    assignments: tuple[str, ...]  # the block's earlier `NAME=value` lines
    output: str | None = None  # a transcript's expected output

    @property
    def bare(self) -> str:
        """The command without a trailing comment (one after two spaces or more)."""
        return re.split(r"\s{2,}#", self.line, maxsplit=1)[0].strip()

    def __str__(self) -> str:
        return f"README:{self.block}: {self.line}"


_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S+(\s+#.*)?$")


def readme_commands(text: str) -> list[Command]:
    """The README's commands, in order."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if not fence.startswith("```"):
            i += 1
            continue
        kind, start, body = fence[3:], i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i].strip() if fence != lines[i] else lines[i])
            i += 1
        i += 1
        if kind == "sh":
            commands += _sh_block(body, start)
        elif kind == "" and body and body[0].startswith("$ "):
            commands += _transcript(body, start)
    return commands


def _sh_block(body: list[str], start: int) -> list[Command]:
    found, assignments, pending = [], [], ""
    for raw in body:
        if raw.endswith("\\"):
            pending += raw[:-1].strip() + " "
            continue
        line, pending = (pending + raw.strip()).strip(), ""
        if not line or line.startswith("#"):
            continue
        if _ASSIGNMENT.match(line):
            assignments.append(line)
            continue
        found.append(Command(line, start, tuple(assignments)))
    return found


def _transcript(body: list[str], start: int) -> list[Command]:
    found: list[Command] = []
    for raw in body:
        if raw.startswith("$ "):
            found.append(Command(raw[2:].strip(), start, (), ""))
        elif found:
            last = found[-1]
            found[-1] = Command(last.line, start, (), f"{last.output}{raw}\n")
    return found


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_commands_and_every_exception_is_in_it():
    lines = {command.bare for command in COMMANDS}
    assert len(COMMANDS) >= 15
    assert set(NOT_RUN) <= lines, set(NOT_RUN) - lines


def test_readme_commands_are_parsed_with_continuations_and_assignments():
    text = "```sh\nKEY=k   # a key\ncurl -d '{}' \\\n  http://x/api\n```\n"
    (command,) = readme_commands(text)
    assert command.line == "curl -d '{}' http://x/api"
    assert command.assignments == ("KEY=k   # a key",)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the checkout after `make venv`: its `.venv` (this test
    environment) and a copy of its `config/`."""
    here = tmp_path_factory.mktemp("checkout")
    (here / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "config", here / "config")
    return here


@pytest.fixture(scope="module")
def served(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`wsfan serve` on the README's port, with its embedded servers, in `checkout`."""
    log = tmp_path_factory.mktemp("served") / "serve.stderr"
    env = clean_env(WSFAN_SERVER__WORKERS="1")
    with ready([".venv/bin/wsfan", "serve"], PORT, log, cwd=checkout, env=env) as server:
        yield server


def _run(command: Command, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = "\n".join([*command.assignments, command.line])
    if command.line.startswith(STREAMS):
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=STREAM_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            out, err = proc.communicate()
            return subprocess.CompletedProcess(script, 0, out, err)
        return subprocess.CompletedProcess(script, proc.returncode, out, err)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


RUN = [c for c in COMMANDS if c.bare not in NOT_RUN]


@pytest.mark.parametrize("command", RUN, ids=str)
def test_readme_command_runs_as_written(command: Command, served: Server, checkout: Path):
    done = _run(command, checkout)
    shown = f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, shown
    if command.output is not None:  # a transcript: its lines are printed (among log lines)
        printed = (done.stdout + done.stderr).splitlines()
        assert [line for line in printed if line in command.output.splitlines()] == (
            command.output.splitlines()
        ), shown
        assert done.returncode == 2, shown
        return
    assert done.returncode == 0, shown
    assert '"error"' not in done.stdout, shown
    if command.line.startswith(STREAMS):
        assert done.stdout.startswith(('data: {"connect"', '{"connect"')), shown
