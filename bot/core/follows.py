"""Following a branch: it is analyzed again whenever its head moves, and the delta goes where
the follow was asked for (in Slack, the branch's thread there).

The scheduler calls `check()` every few minutes in each consumer with the scheduler on. Each
follow's new head is claimed by compare-and-swap on its row, and the run it starts carries the
event key `follow:<id>:<head>`, so however many instances check, one run is started per head.
The runs go through the same door as a person's request: the daily budget bounds them, and a
refusal is logged and tried again at the next check."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.context.git import GitRepo, validate_ref_name
from agents.errors import AnalysisInputError, GitFailure, shown
from bot.config import ConfigError, PolicyConfig
from bot.core.actor import Actor, Surface, UserError
from bot.core.chat_errors import for_chat
from bot.core.commands import AnalyzeBranch, Follow, Unfollow
from bot.core.ports import RunAnnouncer
from bot.repos import RepoResolver
from bot.store.follows import FollowStore
from bot.store.models import FollowRow

log = logging.getLogger(__name__)

# Who a follow of the policy's `[follow] branches` belongs to.
POLICY = "policy"

Request = Callable[[Actor, AnalyzeBranch, str, str], str | None]


class Follows:
    def __init__(
        self,
        store: FollowStore,
        policy: PolicyConfig,
        repos: RepoResolver,
        request: Request,
        announcers: Sequence[RunAnnouncer] = (),
    ) -> None:
        """`request(actor, command, event_key, place)`: queue a run as a person's request
        would be (the service's), returning its id if it was created now."""
        self.store = store
        self.policy = policy
        self.repos = repos
        self.request = request
        self.announcers = list(announcers)

    def follow(self, actor: Actor, command: Follow, place: str) -> str:
        assert command.branch is not None
        name, head = self._head_now(command.branch, command.repo)
        row, created = self.store.add(
            FollowRow(
                repo=name,
                branch=command.branch,
                place=place,
                surface=actor.surface,
                requester=actor.user,
                team=actor.team,
                head=head,
            )
        )
        if not created:
            return f"`{command.branch}` in {name} is followed here already."
        return (
            f"Following `{command.branch}` in {name}: each new head is analyzed and its "
            f"changes posted here (checked every {self.policy.follow.every // 60} min)."
        )

    def unfollow(self, actor: Actor, command: Unfollow, place: str) -> str:
        name = self._repo_name(command.repo)
        if not self.store.remove(name, command.branch, place):
            raise UserError(
                f"`{shown(command.branch)}` in {name} is not followed here.", "`follow` lists them."
            )
        return f"No longer following `{command.branch}` in {name} here."

    def listed(self, place: str) -> list[FollowRow]:
        return self.store.in_place(place)

    def check(self) -> list[str]:
        """Analyze every followed branch whose head moved; the runs started here."""
        self._follow_policy_branches()
        started: list[str] = []
        checkouts: dict[str, Path] = {}  # each repository fetched once per check
        for row in self.store.all():
            try:
                run_id = self._check_one(row, checkouts)
            except Exception:  # one branch failing leaves the others checked
                log.exception("follow %s: checking %s in %s failed", row.id, row.branch, row.repo)
                continue
            if run_id is not None:
                started.append(run_id)
        return started

    def _check_one(self, row: FollowRow, checkouts: dict[str, Path]) -> str | None:
        assert row.id is not None
        try:
            if row.repo not in checkouts:
                checkouts[row.repo] = self.repos.prepare(row.repo, self.policy.repos[row.repo])
            head = GitRepo.open(checkouts[row.repo]).resolve(row.branch).sha
        except KeyError:
            log.warning("follow %s: repository %s is no longer configured", row.id, row.repo)
            return None
        except (AnalysisInputError, GitFailure) as exc:
            log.info("follow %s: %s in %s: %s", row.id, row.branch, row.repo, exc)
            return None
        if head == row.head:
            return None
        if row.head is None:  # first seen (a policy follow): from now on, changes are news
            self.store.move_head(row.id, None, head)
            return None
        actor = Actor(row.requester, Surface(row.surface), row.team)
        try:
            run_id = self.request(
                actor, AnalyzeBranch(row.branch, row.repo), f"follow:{row.id}:{head}", row.place
            )
        except UserError as exc:  # today's budget, say: the head stays unseen, tried again
            log.warning("follow %s: %s not analyzed: %s", row.id, row.branch, exc.message)
            return None
        self.store.move_head(row.id, row.head, head)
        # The instance that created the run shows it (the event key makes the run one).
        if run_id is not None:
            for announcer in self.announcers:
                try:
                    announcer.announce(run_id)
                except Exception:
                    log.exception("follow %s: could not show run %s", row.id, run_id)
        return run_id

    def _follow_policy_branches(self) -> None:
        rule = self.policy.follow
        if not rule.branches or not rule.channel:
            return
        for name, config in self.policy.repos.items():
            if config.path is None:
                continue
            try:
                names = GitRepo.open(config.path).branch_names()
            except (AnalysisInputError, GitFailure):
                continue
            for branch in names:
                if branch.startswith("origin/") or branch == "HEAD":
                    continue
                if any(fnmatch.fnmatchcase(branch, p) for p in rule.branches):
                    self.store.add(
                        FollowRow(
                            repo=name,
                            branch=branch,
                            place=rule.channel,
                            surface=Surface.slack,
                            requester=POLICY,
                        )
                    )

    def _repo_name(self, repo: str | None) -> str:
        try:
            return self.policy.repo(repo)[0]
        except ConfigError as exc:
            raise UserError(str(exc), "Name a configured repository with `in REPO`.") from None

    def _head_now(self, branch: str, repo: str | None) -> tuple[str, str | None]:
        name = self._repo_name(repo)
        config = self.policy.repos[name]
        try:
            validate_ref_name(branch)
            if config.path is None:
                return name, None  # a url repository: its head is read at the first check
            return name, GitRepo.open(config.path).resolve(branch).sha
        except AnalysisInputError as exc:
            raise UserError(*for_chat(exc, name, config.path)) from None


def follows_text(result: object) -> str:
    """What `follow` / `unfollow` answered, in words any surface can show."""
    if isinstance(result, str):
        return result
    rows = result if isinstance(result, list) else []
    if not rows:
        return "Nothing is followed here. `follow branch NAME [in REPO]` starts."
    return "Followed here:\n" + "\n".join(
        f"  {row.branch} in {row.repo} (by {row.requester}, last head "
        f"{(row.head or 'not read yet')[:10]})"
        for row in rows
    )
