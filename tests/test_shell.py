"""`chatops shell` driven through its stdin, as a person would type; history survives restarts."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.commands import VERBS, AnalyzeBranch
from bot.settings import Settings
from bot.surfaces.repl import ShellCompleter, Sources, complete, prompt_session
from bot.surfaces.shell import Shell
from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env


def shell(repo: Path, data: Path, lines: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(CHATOPS_DATA_DIR=str(data))
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell", "--repo", str(repo), *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_analyze_shows_progress_then_the_report(planted_repo: RepoBuilder, tmp_path: Path) -> None:
    done = shell(
        planted_repo.root,
        tmp_path / "data",
        ["/agent analyze branch feature/planted", "exit"],
        "--as",
        "ana",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "acting as ana" in out
    assert "branches feature/planted, main" in out
    assert "queued: analyzing feature/planted in repo, requested by ana" in out
    order = [
        out.index(f"  {name} done in")
        for name in (
            "code_review",
            "tests",
            "dependencies",
            "feature_flags",
            "risk",
        )
    ]
    assert order == sorted(order)
    report_at = out.index("Risk  CRITICAL")
    assert report_at > order[-1]
    assert "Possible AWS Access Key added" in out
    assert "AKIA4HJXZQ2WBNVGL7PK" not in out
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_history_survives_a_restart_and_errors_say_what_to_do(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    first = shell(planted_repo.root, data, ["analyze branch feature/planted"])
    run_id = first.stdout.split("Run ", 1)[1].split(" ", 1)[0]
    second = shell(
        planted_repo.root,
        data,
        [
            "/agent status",
            f"/agent status {run_id}",
            "/agent analyze branch feature/plant",
            "/agent analyze branch --upload-pack=x",
            "/agent stop nope",
            f"/agent stop {run_id}",
            f"approve {run_id}/P1",
            "frobnicate",
        ],
    )
    out = second.stdout
    assert f"{run_id} │ done" in out
    assert out.count("Risk  CRITICAL") == 1  # `status RUN` shows the stored report again
    assert "error: No branch named 'feature/plant'" in out
    assert "Did you mean: feature/planted?" in out
    assert "error: '--upload-pack=x' is not a valid branch name." in out
    assert "error: No run 'nope'." in out
    assert f"error: Run {run_id} is already done." in out
    assert f"Not done: there is no proposal {run_id}/P1." in out
    assert "error: Unknown command 'frobnicate'." in out
    assert "Traceback" not in second.stderr


@pytest.mark.slow
def test_a_broken_policy_file_stops_the_shell_with_the_reason(tmp_path: Path) -> None:
    policy = tmp_path / "chatops.toml"
    policy.write_text('[repos.shop]\nmode = "yolo"\npath = "."\n')
    env = clean_env(CHATOPS_DATA_DIR=str(tmp_path / "data"), CHATOPS_CONFIG=str(policy))
    done = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input="exit\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert f"error: {policy}: repos.shop.mode: Input should be" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_approve_in_the_shell_commits_and_audit_shows_it(repo: RepoBuilder, tmp_path: Path) -> None:
    repo.branch("feature/imports")
    repo.commit({"shop/cli.py": "import os\nimport sys\n\n\ndef main():\n    return sys.argv\n"})
    repo.checkout("main")
    base = repo.head("feature/imports")
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{repo.root}"\n\n[approvals]\napprovers = ["lead"]\n')
    env = clean_env(CHATOPS_DATA_DIR=str(tmp_path / "data"), CHATOPS_CONFIG=str(policy))

    def run(args: list[str], lines: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    first = run(["shell", "--as", "dev"], ["analyze branch feature/imports", "approve P1"])
    assert "Not done: four-eyes is on" in first.stdout
    run_id = first.stdout.split("Run ", 1)[1].split(" ", 1)[0]
    second = run(["shell", "--as", "lead"], [f"approve {run_id}/P1"])
    assert f"{run_id}/P1 approved by lead" in second.stdout
    assert f"{run_id}/P1: applied: committed" in second.stdout
    assert repo.git("rev-list", "--count", f"{base}..feature/imports").strip() == "1"
    audit = run(["audit", "--run", run_id], [])
    assert audit.returncode == 0, audit.stderr
    assert "denied" in audit.stdout and "granted" in audit.stdout and "ok" in audit.stdout
    assert "3 audit row(s)" in audit.stderr
    bad = run(["audit", "--since", "yesterday"], [])
    assert bad.returncode == 2 and "is not a date" in bad.stderr


# -- the line editor (a person at a terminal) -------------------------------------------------


class Screen(io.StringIO):
    """The shell's console output, and a way to wait until something is on it."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            written = super().write(text)
            self.changed.notify_all()
        return written

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        """Until `predicate` holds: looked at again on each write, and every 50 ms for what
        changes without one (a line the prompt resets)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; shown:\n{self.getvalue()}")
                self.changed.wait(min(left, 0.05))


class Typist:
    """Types into the shell's prompt as a person does: a key, then a look at what it did."""

    def __init__(self, keys: PipeInput, session: PromptSession[str], screen: Screen) -> None:
        self.keys = keys
        self.session = session
        self.screen = screen
        session.default_buffer.on_text_changed += lambda _: self._changed()

    def _changed(self) -> None:
        with self.screen.changed:
            self.screen.changed.notify_all()

    def type(self, keys: str) -> None:
        self.keys.send_text(keys)

    def line_is(self, text: str) -> None:
        """Wait until the line being edited reads `text` (completion and history are async)."""
        self.screen.wait(lambda: self.session.default_buffer.text == text, f"the line {text!r}")

    def shown(self, text: str, times: int = 1) -> None:
        self.screen.wait(lambda: self.screen.getvalue().count(text) >= times, repr(text))


def at_the_prompt(
    app: Runtime, history: Path, script: Callable[[Typist], None], last_run: str | None = None
) -> tuple[int, str]:
    """Run the shell's loop here, on prompt_toolkit's pipe input, while `script` types."""
    screen = Screen()
    shell = Shell(app.service, "ana", Console(file=screen, width=200), history=history)
    shell.last_run = last_run
    failed: list[BaseException] = []
    with create_pipe_input() as keys:
        session = prompt_session(shell.sources(), history, input=keys, output=DummyOutput())
        typist = Typist(keys, session, screen)

        def typing() -> None:
            try:
                script(typist)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                failed.append(exc)
            finally:
                keys.send_text("\x03\x04")  # Ctrl-C, Ctrl-D: the shell leaves, whatever happened

        person = threading.Thread(target=typing)
        person.start()
        code = shell.run(shell.typed(session))
        person.join(timeout=30)
    if failed:
        raise failed[0]
    return code, screen.getvalue()


@pytest.fixture
def app(planted_repo: RepoBuilder, tmp_path: Path) -> Iterator[Runtime]:
    built = build_app(Settings(chatops_data_dir=tmp_path / "data"), repo_override=planted_repo.root)
    yield built
    built.close()


def test_tab_completes_commands_branches_and_runs_and_the_line_runs(
    app: Runtime, tmp_path: Path
) -> None:
    queued = app.service.request_analysis(Actor("ana", "shell"), AnalyzeBranch("feature/planted"))
    run_id = queued.run.id  # no worker here: it stays queued, which `status RUN` says

    def script(person: Typist) -> None:
        person.type("stat\t")
        person.line_is("status ")
        person.type("\t")
        person.line_is(f"status {run_id} ")  # the only run
        person.type("\r")
        person.shown(f"Run {run_id}: queued (feature/planted in repo).")
        person.type("an\t")
        person.line_is("analyze ")
        person.type("b\t")
        person.line_is("analyze branch ")
        person.type("feature/pl\t")
        person.line_is("analyze branch feature/planted ")
        person.type("ag\t")
        person.line_is("analyze branch feature/planted against ")
        person.type("feat\t")
        person.line_is("analyze branch feature/planted against feature/planted ")
        person.type("\r")  # the same branch as base: refused before queueing
        person.shown("error: The branch and the base are the same (feature/planted).")
        person.type("he\t")
        person.line_is("help ")
        person.type("\r")
        person.shown("leave the shell")

    code, out = at_the_prompt(app, tmp_path / "history", script)
    assert code == 0
    assert "Traceback" not in out


def test_history_is_kept_in_the_data_folder_across_sessions(app: Runtime, tmp_path: Path) -> None:
    history = tmp_path / "data" / "shell_history"

    def first(person: Typist) -> None:
        person.type("help\r")
        person.shown("leave the shell")
        person.type("\x1b[A")  # up: the line just run
        person.line_is("help")
        person.type("\r")
        person.shown("leave the shell", times=2)

    assert at_the_prompt(app, history, first)[0] == 0

    def second(person: Typist) -> None:
        person.type("\x1b[A")  # the last line of the session before
        person.line_is("help")
        person.type("\x15status\r")  # Ctrl-U: the line emptied, then typed again
        person.shown("No runs yet.")

    code, out = at_the_prompt(app, history, second)
    assert code == 0 and out.count("leave the shell") == 0
    assert [line for line in history.read_text().splitlines() if line.startswith("+")] == [
        "+help",
        "+status",
    ]


def test_ctrl_c_drops_the_line_and_ctrl_d_leaves_cleanly(app: Runtime, tmp_path: Path) -> None:
    def script(person: Typist) -> None:
        person.type("analyze branch nope")
        person.line_is("analyze branch nope")
        person.type("\x03")  # Ctrl-C: the line is dropped, the shell asks again
        person.line_is("")
        person.type("clear\rfrobnicat\r")
        person.shown("error: Unknown command 'frobnicat'.")
        person.type("stauts\r")
        person.shown("error: Unknown command 'stauts'. Did you mean 'status'?")
        person.type("exti\r")
        person.shown("error: Unknown command 'exti'. Did you mean 'exit'?")
        # then Ctrl-D, on an empty line: the shell ends, with 0

    code, out = at_the_prompt(app, tmp_path / "history", script)
    assert code == 0
    assert "nope" not in out  # the dropped line never ran
    assert "Traceback" not in out


def test_completion_follows_the_grammar() -> None:
    sources = Sources(
        branches=lambda repo: {
            "shop": ["main", "feature/login"],
            None: ["main", "feature/login", "x"],
        }[repo],
        repos=lambda: ["shop", "web"],
        runs=lambda: ["3f2a9c1b7d4e", "0b1c2d3e4f5a"],
        proposals=lambda: ["3f2a9c1b7d4e/P1"],
        shell_words=("exit", "clear"),
    )

    def offered(before: str) -> list[str]:
        words = before.split()
        current = "" if not before or before.endswith(" ") else words.pop()
        return complete(words, current, sources)

    assert offered("") == [*VERBS, "exit", "clear"]
    assert offered("/agent a") == ["analyze", "approve"]
    assert offered("analyze ") == ["branch", "ticket"]
    assert offered("analyze branch f") == ["feature/login"]
    assert offered("analyze branch main ") == ["in", "against"]
    assert offered("analyze branch main in ") == ["shop", "web"]
    assert offered("analyze branch main in shop ") == ["against"]
    assert offered("analyze branch main in shop against ") == ["main", "feature/login"]
    assert offered("analyze branch main against m") == ["main"]
    assert offered("analyze ticket PAY-1 ") == ["branch", "in"]
    assert offered("analyze ticket ") == []  # a ticket's key is not known here
    assert offered("status ") == ["3f2a9c1b7d4e", "0b1c2d3e4f5a"]
    assert offered("stop 0") == ["0b1c2d3e4f5a"]
    assert offered("approve ") == ["3f2a9c1b7d4e/P1", "3f2a9c1b7d4e/", "0b1c2d3e4f5a/"]
    assert offered("learnings w") == ["web"]
    assert offered("follow ") == ["branch"]
    assert offered("status 3f2a9c1b7d4e ") == []  # status takes one run
    assert offered("frobnicate ") == []
    found = list(ShellCompleter(sources).get_completions(Document("approve 3f"), CompleteEvent()))
    assert [(c.text, c.start_position) for c in found] == [
        ("3f2a9c1b7d4e/P1 ", -2),
        ("3f2a9c1b7d4e/", -2),  # waits for its P1: no space
    ]


# -- a first run: a clone with only main ------------------------------------------------------


def test_a_clone_with_only_main_says_so_and_offers_what_works(
    repo: RepoBuilder, tmp_path: Path
) -> None:
    repo.commit({"shop/a.py": "A = 1\n"}, "second")
    repo.commit({"shop/b.py": "B = 2\n"}, "third")
    clone = tmp_path / "clone"
    repo.git("clone", "-q", str(repo.root), str(clone))
    app = build_app(Settings(chatops_data_dir=tmp_path / "data"), repo_override=clone)
    out = io.StringIO()
    try:
        Shell(app.service, "ana", Console(file=out, width=200)).run(
            [
                "analyze branch main",
                "analyze branch main --base main~2",
                "analyze branch main against main~5",
            ]
        )
        # What the banner offers works: main's last commits, as a run of its own.
        requested = app.service.request_analysis(
            Actor("ana", "shell"), AnalyzeBranch("main", base="main~2")
        )
        app.executor(requested.run.id)
        report = app.service.report(requested.run.id)
    finally:
        app.close()
    said = out.getvalue()
    assert "clone (" in said and "branches main, origin/main" in said
    assert (
        "Nothing to analyze in clone yet: main is its default branch, and there is no other."
        in (said)
    )
    for offer in (
        "analyze branch main against main~2   its last 2 commits",
        "analyze branch NAME against BASE",
        "chatops demo",
    ):
        assert offer in said
    assert "error: Nothing changed: main has no commits that origin/main does not have." in said
    assert (
        "Commit to the branch first, or add `against BASE`, the branch it was made from "
        "(`against main~2`: the last 2 commits of main)." in said
    )
    assert "--base is the command line's; here say `against main~2`." in said
    assert "error: main has 3 commit(s): there is no main~5." in said
    assert "Go back fewer commits: `against main~2` is its first." in said
    assert "queued" not in said  # nothing was queued that could only fail
    assert report is not None
    assert (report.target.branch, report.target.base) == ("main", "main~2")
    assert report.coverage.files_analyzed == ["shop/a.py", "shop/b.py"]


def test_a_repository_with_branches_of_its_own_offers_nothing(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    app = build_app(Settings(chatops_data_dir=tmp_path / "data"), repo_override=planted_repo.root)
    out = io.StringIO()
    try:
        Shell(app.service, "ana", Console(file=out, width=200)).run([])
    finally:
        app.close()
    assert "branches feature/planted, main" in out.getvalue()
    assert "Nothing to analyze" not in out.getvalue()


# -- the real command, in a pseudo-terminal ---------------------------------------------------

_ESCAPES = re.compile(
    r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)


class Terminal:
    """A pseudo-terminal with `chatops shell` in it: what a person types, what they see (its
    escape sequences taken out), and the cursor position prompt_toolkit asks a terminal for."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the shell, its stdin and stdout the terminal
            os.execve(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.raw = b""
        self.seen = 0  # what `expect` has already matched, in `text`
        self.closed = False

    @property
    def text(self) -> str:
        return _ESCAPES.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def _read(self, until: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, until - time.monotonic()))
        if not ready:
            return
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child is gone and the terminal closed
            chunk = b""
        if not chunk:
            self.closed = True
            return
        if b"\x1b[6n" in chunk:  # where is the cursor? (a terminal answers; say row 1)
            self.type("\x1b[1;1R")
        self.raw += chunk

    def expect(self, text: str, timeout: float = 60.0) -> None:
        """Read until `text` appears after what was matched before."""
        deadline = time.monotonic() + timeout
        while (at := self.text.find(text, self.seen)) < 0:
            if self.closed or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not shown; the terminal shows:\n{self.text}")
            self._read(deadline)
        self.seen = at + len(text)

    def exit_code(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._read(deadline)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


@pytest.mark.slow
def test_in_a_terminal_the_shell_edits_completes_remembers_and_leaves_on_ctrl_d(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = clean_env(CHATOPS_DATA_DIR=str(data), TERM="xterm-256color")
    term = Terminal([sys.executable, "-m", "bot", "shell", "--repo", str(planted_repo.root)], env)
    try:
        term.expect("branches feature/planted, main")
        term.expect("chatops>")
        term.type("help\r")
        term.expect("leave the shell")
        term.expect("chatops>")
        term.type("\x1b[A")  # up: the line before, to run again
        term.expect("help")
        term.type("\r")
        term.expect("leave the shell")
        term.expect("chatops>")
        term.type("stat")
        term.expect("stat")
        term.type("\t")  # Tab: the only command starting so
        term.expect("us")
        term.type("\r")
        term.expect("No runs yet.")
        term.expect("chatops>")
        term.type("frobnicate")
        term.expect("frobnicate")
        term.type("\x03")  # Ctrl-C: the line dropped, the shell still there
        term.expect("chatops>")
        term.type("stauts\r")
        term.expect("Did you mean 'status'?")
        term.expect("chatops>")
        term.type("\x04")  # Ctrl-D: leaves
        code = term.exit_code()
    finally:
        if not term.closed:
            os.kill(term.pid, signal.SIGKILL)
    assert code == 0, term.text
    assert "Unknown command 'frobnicate'" not in term.text
    assert "Traceback" not in term.text
    typed = [line for line in (data / "shell_history").read_text().splitlines() if line[:1] == "+"]
    assert typed == ["+help", "+status", "+stauts"]
