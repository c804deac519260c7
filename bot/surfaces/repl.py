"""The shell's line editor when a person types at a terminal (prompt_toolkit): editing, history
kept in the data folder, and completion of the grammar's words, branch names and run ids.

`chatops shell` imports this only when its stdin is a terminal: commands piped in are read as
lines, as before, and cost no prompt_toolkit import."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

from bot.core.commands import VERBS

PROMPT = "chatops> "


@dataclass(frozen=True)
class Sources:
    """What completion offers besides the grammar's own words, read when Tab is pressed."""

    branches: Callable[[str | None], list[str]]  # of a repository (None: every one)
    repos: Callable[[], list[str]]
    runs: Callable[[], list[str]]  # recent run ids, newest first
    proposals: Callable[[], list[str]]  # RUN/P1 of the report shown last, still undecided
    shell_words: Sequence[str] = ()  # what the shell answers itself: exit, clear


# After the verb (and `analyze`'s `branch` / `ticket`), the `KEYWORD VALUE` clauses each form
# takes, and what a clause's value is.
_CLAUSES = {
    ("analyze", "branch"): ("in", "against"),
    ("analyze", "ticket"): ("branch", "in"),
    ("follow", "branch"): ("in",),
    ("unfollow", "branch"): ("in",),
}
_VALUES = {"in": "repo", "against": "branch", "branch": "branch"}
_FIRST = {  # what the word after the verb is
    "status": "run",
    "stop": "run",
    "continue": "run",
    "approve": "proposal",
    "reject": "proposal",
    "up": "run",
    "down": "run",
    "learnings": "repo",
}


def complete(words: list[str], current: str, sources: Sources) -> list[str]:
    """The words that may follow `words` and start with `current`, in the order offered."""
    if words and words[0] == "/agent":
        words = words[1:]
    if not words:
        return _starting(current, [*VERBS, *sources.shell_words])
    verb = words[0].lower()
    rest = words[1:]
    if verb in ("analyze", "follow", "unfollow"):
        if not rest:
            return _starting(current, ["branch", "ticket"] if verb == "analyze" else ["branch"])
        form = (verb, rest[0].lower())
        if form not in _CLAUSES:
            return []
        if len(rest) == 1:  # the form's own value: a branch, or a ticket's key (not known)
            return _starting(current, sources.branches(None)) if form[1] == "branch" else []
        return _clause(rest[2:], _CLAUSES[form], current, sources)
    kind = _FIRST.get(verb)
    if kind is None or rest:
        return []
    if kind == "repo":
        return _starting(current, sources.repos())
    if kind == "proposal":
        return _starting(current, [*sources.proposals(), *(f"{r}/" for r in sources.runs())])
    return _starting(current, sources.runs())


def _clause(
    words: list[str], keywords: tuple[str, ...], current: str, sources: Sources
) -> list[str]:
    used = {w.lower() for w in words[0::2]}
    if len(words) % 2 == 0:  # a keyword comes next
        return _starting(current, [k for k in keywords if k not in used])
    keyword = words[-1].lower()
    if keyword not in keywords:
        return []
    if _VALUES[keyword] == "repo":
        return _starting(current, sources.repos())
    repo = words[words.index("in") + 1] if "in" in words[:-1] else None
    return _starting(current, sources.branches(repo))


def _starting(current: str, choices: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for choice in choices:
        if choice.startswith(current) and choice != current:
            seen.setdefault(choice, None)
    return list(seen)


class ShellCompleter(Completer):
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        words = before.split()
        current = "" if not before or before[-1].isspace() else words.pop()
        try:
            found = complete(words, current, self.sources)
        except Exception:  # noqa: BLE001 - a store or git that cannot answer offers nothing
            return
        for word in found:
            # A space after a whole word, so the next one can be typed (or completed) at once;
            # `RUN/` waits for its P1.
            text = word if word.endswith("/") else word + " "
            yield Completion(text, start_position=-len(current), display=word)


class _TrimmedHistory(FileHistory):
    """The file history, each line kept as it runs: a completion's trailing space dropped."""

    def append_string(self, string: str) -> None:
        super().append_string(string.strip())


def prompt_session(
    sources: Sources,
    history: Path | None,
    *,
    input: Input | None = None,  # noqa: A002 - prompt_toolkit's own name for it
    output: Output | None = None,
) -> PromptSession[str]:
    """A prompt with the shell's completion and its history file (`history` None: in memory)."""
    kept: History = InMemoryHistory()
    if history is not None:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            history.touch(exist_ok=True)
            kept = _TrimmedHistory(str(history))
        except OSError:  # a read-only data folder: history for this session only
            kept = InMemoryHistory()
    return PromptSession(
        history=kept,
        completer=ShellCompleter(sources),
        complete_while_typing=False,  # Tab asks: a keystroke never waits on git or the store
        input=input,
        output=output,
    )


def prompted(session: PromptSession[str]) -> Iterator[str]:
    """Lines as a person enters them. Ctrl-C drops the line being typed and asks again; Ctrl-D
    (on an empty line) ends the input."""
    while True:
        try:
            line = session.prompt(PROMPT)
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
        yield line
