"""The command grammar, in one place for every surface (Slack's `/agent`, the shell, tests).

analyze branch NAME [in REPO] [against BASE] [step]
analyze pr NUMBER [in REPO]
status [RUN]
stop RUN
continue RUN | drop RUN/F2 reason   (a run waiting at a checkpoint)
approve P1 | reject P1 [reason]
up [RUN/]F3 | down [RUN/]F3 [reason]   (or RUN alone: the whole report)
learnings [REPO] | forget ID | digest
follow [branch NAME [in REPO]] | unfollow branch NAME [in REPO]
flag retire KEY [in REPO] [keep on|off]
help
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from agents.errors import shown


@dataclass(frozen=True)
class AnalyzeBranch:
    branch: str
    repo: str | None = None
    base: str | None = None
    step: bool = False  # a human checkpoint after each agent


@dataclass(frozen=True)
class AnalyzePullRequest:
    """A pull request of a repository with a code host (`[repos.NAME] github`)."""

    number: int
    repo: str | None = None


@dataclass(frozen=True)
class AnalyzeTicket:
    key: str
    branch: str | None = None
    repo: str | None = None


@dataclass(frozen=True)
class Status:
    run_id: str | None = None


@dataclass(frozen=True)
class Stop:
    run_id: str


@dataclass(frozen=True)
class Continue:
    """A run waiting at a checkpoint goes on to its next agent."""

    run_id: str


@dataclass(frozen=True)
class Drop:
    """At a checkpoint: a finding is not a problem (a 👎 with its reason); later agents and the
    report go without it."""

    run_id: str
    item: str  # F2 or a fingerprint
    reason: str


@dataclass(frozen=True)
class Approve:
    proposal: str
    as_pull_request: bool = False  # `approve P1 as pr`: opened as a pull request, not committed


@dataclass(frozen=True)
class Reject:
    proposal: str
    reason: str = ""


@dataclass(frozen=True)
class Vote:
    """👍 (+1) or 👎 (-1) on a finding (`item` F3) or on a whole report (`item` None)."""

    value: int
    run_id: str | None = None  # None: the report the shell showed last
    item: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Learnings:
    repo: str | None = None


@dataclass(frozen=True)
class Forget:
    learning_id: str


@dataclass(frozen=True)
class Digest:
    pass


@dataclass(frozen=True)
class Follow:
    """Re-analyze a branch whenever its head moves (`branch` None: list what is followed)."""

    branch: str | None = None
    repo: str | None = None


@dataclass(frozen=True)
class Unfollow:
    branch: str
    repo: str | None = None


@dataclass(frozen=True)
class FlagRetire:
    """Propose the patch that retires a feature flag, on a new branch (approval needed)."""

    key: str
    repo: str | None = None
    keep: bool | None = None  # the side kept; None: the definition's default


@dataclass(frozen=True)
class Help:
    pass


Command = (
    AnalyzeBranch
    | AnalyzePullRequest
    | AnalyzeTicket
    | Status
    | Stop
    | Continue
    | Drop
    | Approve
    | Reject
    | Vote
    | Learnings
    | Forget
    | Digest
    | Follow
    | Unfollow
    | FlagRetire
    | Help
)

USAGE = {
    "analyze": "analyze branch NAME [in REPO] [against BASE] [step]   "
    "e.g. analyze branch feature/login in shop  (step: wait for you after each agent)",
    "pr": "analyze pr NUMBER [in REPO]   e.g. analyze pr 123 in shop  (a pull request on "
    "the repository's code host)",
    "ticket": "analyze ticket KEY [branch NAME] [in REPO]   e.g. analyze ticket PAY-412",
    "status": "status [RUN]      e.g. status 3f2a9c1b7d4e  (no RUN: your recent runs)",
    "stop": "stop RUN          e.g. stop 3f2a9c1b7d4e  (ends the run at the next agent)",
    "continue": "continue RUN      a run waiting at a checkpoint goes on to its next agent",
    "drop": "drop RUN/F2 REASON  at a checkpoint: not a problem, e.g. drop 3f2a9c1b7d4e/F2 "
    '"test fixture"',
    "approve": "approve PROPOSAL [as pr]  e.g. approve 3f2a9c1b7d4e/P1 (as pr: opened as a "
    "pull request on the code host instead of committed)",
    "reject": 'reject PROPOSAL [reason]  e.g. reject 3f2a9c1b7d4e/P1 "not needed"',
    "up": "up [RUN/]F3       👍 a finding (or `up RUN` for the whole report)",
    "down": 'down [RUN/]F3 [reason]  👎 and what was wrong, e.g. down F2 "tests may assert"',
    "learnings": "learnings [REPO] what the agents learned from the votes",
    "forget": "forget ID         remove a learning (approvers)",
    "digest": "digest            the last 24 hours of agent activity, here",
    "follow": "follow branch NAME [in REPO]  re-analyze it here when its head moves "
    "(`follow` alone: what is followed here)",
    "unfollow": "unfollow branch NAME [in REPO]",
    "flag": "flag retire KEY [in REPO] [keep on|off]  propose removing a feature flag and "
    "its dead code, on a new branch",
    "help": "help              this list",
}


def help_text(prefix: str = "/agent ") -> str:
    return "Commands:\n" + "\n".join(f"  {prefix}{line}" for line in USAGE.values())


class CommandError(Exception):
    """What was wrong with a command, and the usage that would have worked."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message} Usage: {self.usage}" if self.usage else self.message


MAX_COMMAND_CHARS = 2000

# The first word of every command, for completion and for "Did you mean".
VERBS = (
    "analyze",
    "status",
    "stop",
    "continue",
    "drop",
    "approve",
    "reject",
    "up",
    "down",
    "learnings",
    "forget",
    "digest",
    "follow",
    "unfollow",
    "flag",
    "help",
)

# The command line's options that have a word here: said in this grammar's words when typed.
_CLI_OPTIONS = {
    "--base": ("against", "`against {value}`"),
    "--repo": ("in", "`in REPO`, a configured repository's name"),
    "--branch": ("branch", "`branch {value}`"),
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ " Did you mean 'analyze'?" when `word` is close to one of `choices` (as the command line
    says it of a mistyped command), else ""."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=2, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def parse(text: str, *, also: Iterable[str] = ()) -> Command:
    """Parse one command; a leading `/agent` is optional. `also`: the words a surface answers
    itself (the shell's `exit`), suggested for a mistyped command like the grammar's own."""
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandError(
            f"That command is {len(text):,} characters long; a command is at most "
            f"{MAX_COMMAND_CHARS:,}.",
            "help lists the commands",
        )
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise CommandError(f"Cannot read that command ({exc}).", "close your quotes") from None
    if words and words[0] == "/agent":
        words = words[1:]
    if not words:
        return Help()
    verb, rest = words[0].lower(), words[1:]
    if verb in ("help", "?"):
        return Help()
    if verb == "analyze":
        return _analyze(rest)
    if verb == "status":
        if len(rest) > 1:
            raise CommandError("status takes at most one run id.", USAGE["status"])
        return Status(rest[0] if rest else None)
    if verb == "stop":
        if len(rest) != 1:
            raise CommandError("stop needs the run id.", USAGE["stop"])
        return Stop(rest[0])
    if verb == "continue":
        if len(rest) != 1:
            raise CommandError("continue needs the run id.", USAGE["continue"])
        return Continue(rest[0])
    if verb == "drop":
        return _drop(rest)
    if verb == "approve":
        how = [word.lower() for word in rest[1:]]
        if not rest or how not in ([], ["as", "pr"], ["as", "a", "pull", "request"]):
            raise CommandError(
                "approve needs one proposal id, and optionally `as pr`.", USAGE["approve"]
            )
        return Approve(rest[0], as_pull_request=bool(how))
    if verb == "reject":
        if not rest:
            raise CommandError("reject needs a proposal id.", USAGE["reject"])
        return Reject(rest[0], " ".join(rest[1:]))
    if verb in ("up", "down"):
        return _vote(verb, rest)
    if verb == "learnings":
        if len(rest) > 1:
            raise CommandError("learnings takes at most one repository.", USAGE["learnings"])
        return Learnings(rest[0] if rest else None)
    if verb == "forget":
        if len(rest) != 1:
            raise CommandError("forget needs one learning id.", USAGE["forget"])
        return Forget(rest[0])
    if verb == "digest":
        if rest:
            raise CommandError("digest takes no arguments.", USAGE["digest"])
        return Digest()
    if verb == "flag":
        return _flag(rest)
    if verb in ("follow", "unfollow"):
        return _follow(verb, rest)
    raise CommandError(
        f"Unknown command {shown(verb)!r}.{did_you_mean(verb, [*VERBS, *also])}",
        "help lists the commands",
    )


_RUN_ID = re.compile(r"[0-9a-f]{6,32}")
_ITEM = re.compile(r"[Ff]\d{1,4}")


def _vote(verb: str, words: list[str]) -> Vote:
    value = 1 if verb == "up" else -1
    if verb == "up" and len(words) > 1:
        raise CommandError("up takes one finding or run.", USAGE["up"])
    reason = " ".join(words[1:])
    if not words:
        return Vote(value, reason=reason)
    target = words[0]
    run, _, item = target.rpartition("/")
    if run and _RUN_ID.fullmatch(run) and _ITEM.fullmatch(item):
        return Vote(value, run, item.upper(), reason)
    if not run and _ITEM.fullmatch(item):
        return Vote(value, None, item.upper(), reason)
    if not run and _RUN_ID.fullmatch(item):
        return Vote(value, item, None, reason)
    raise CommandError(f"{shown(target)!r} is not a finding (F3, RUN/F3) or a run id.", USAGE[verb])


def _drop(words: list[str]) -> Drop:
    run, _, item = words[0].rpartition("/") if words else ("", "", "")
    if not (run and _RUN_ID.fullmatch(run) and _ITEM.fullmatch(item)):
        raise CommandError("drop needs a run's finding, RUN/F2.", USAGE["drop"])
    reason = " ".join(words[1:]).strip()
    if not reason:
        raise CommandError("Say why it is not a problem.", USAGE["drop"])
    return Drop(run, item.upper(), reason)


_PR_NUMBER = re.compile(r"#?([1-9][0-9]{0,9})")


def _analyze(words: list[str]) -> AnalyzeBranch | AnalyzePullRequest | AnalyzeTicket:
    if words and words[0].lower() in ("pr", "pull"):
        if len(words) < 2:
            raise CommandError("Say which pull request, by its number.", USAGE["pr"])
        number = _PR_NUMBER.fullmatch(words[1])
        if number is None:
            raise CommandError(f"{shown(words[1])!r} is not a pull request number.", USAGE["pr"])
        clauses = _clauses(words[2:], ("in",), USAGE["pr"])
        return AnalyzePullRequest(number=int(number.group(1)), repo=clauses.get("in"))
    if len(words) >= 2 and words[0].lower() == "ticket":
        clauses = _clauses(words[2:], ("branch", "in"), USAGE["ticket"])
        return AnalyzeTicket(
            key=words[1].upper(), branch=clauses.get("branch"), repo=clauses.get("in")
        )
    if words and words[0].lower() == "ticket":
        raise CommandError("Say which ticket.", USAGE["ticket"])
    if len(words) == 1 and words[0].lower() == "branch":
        raise CommandError("Say which branch.", USAGE["analyze"])
    if len(words) < 2 or words[0].lower() != "branch":
        guess = did_you_mean(words[0], ("branch", "pr", "ticket")) if words else ""
        raise CommandError(f"Say what to analyze.{guess}", USAGE["analyze"])
    rest = words[2:]
    # `step` is a word of its own, the last one (never a clause's value).
    step = bool(rest) and rest[-1].lower() == "step"
    clauses = _clauses(rest[:-1] if step else rest, ("in", "against"), USAGE["analyze"])
    return AnalyzeBranch(
        branch=words[1], repo=clauses.get("in"), base=clauses.get("against"), step=step
    )


_FLAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


def _flag(words: list[str]) -> FlagRetire:
    if not words or words[0].lower() != "retire":
        guess = did_you_mean(words[0], ("retire",)) if words else ""
        raise CommandError(f"Say what to do with the flag.{guess}", USAGE["flag"])
    if len(words) < 2:
        raise CommandError("Say which flag to retire.", USAGE["flag"])
    key = words[1]
    if not _FLAG_KEY.fullmatch(key):
        raise CommandError(f"{shown(key)!r} is not a flag key.", USAGE["flag"])
    clauses = _clauses(words[2:], ("in", "keep"), USAGE["flag"])
    keep = clauses.get("keep")
    if keep is not None and keep.lower() not in ("on", "off"):
        raise CommandError(f"keep is on or off, not {shown(keep)!r}.", USAGE["flag"])
    return FlagRetire(
        key=key, repo=clauses.get("in"), keep=None if keep is None else keep.lower() == "on"
    )


def _follow(verb: str, words: list[str]) -> Follow | Unfollow:
    if verb == "follow" and not words:
        return Follow()
    if len(words) < 2 or words[0].lower() != "branch":
        raise CommandError(f"Say which branch to {verb}.", USAGE[verb])
    clauses = _clauses(words[2:], ("in",), USAGE[verb])
    if verb == "follow":
        return Follow(words[1], clauses.get("in"))
    return Unfollow(words[1], clauses.get("in"))


def _clauses(words: list[str], keywords: tuple[str, ...], usage: str) -> dict[str, str]:
    """`KEYWORD VALUE` pairs in any order, each keyword at most once."""
    found: dict[str, str] = {}
    rest = words
    while rest:
        if len(rest) < 2:
            raise CommandError(f"{shown(rest[0])!r} needs a value.", usage)
        keyword, value, rest = rest[0].lower(), rest[1], rest[2:]
        word, said = _CLI_OPTIONS.get(keyword, ("", ""))
        if word in keywords:
            raise CommandError(
                f"{keyword} is the command line's; here say {said.format(value=shown(value))}.",
                usage,
            )
        if keyword not in keywords:
            raise CommandError(
                f"Unexpected {shown(keyword)!r}.{did_you_mean(keyword, keywords)}", usage
            )
        if keyword in found:
            raise CommandError(f"Unexpected {shown(keyword)!r}.", usage)
        found[keyword] = value
    return found
