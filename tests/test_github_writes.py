"""The third safety tier over a fake GitHub on 127.0.0.1 (githubkit speaking HTTP to it) with a
real bare repository as the remote: a pull request's review posted once a person approves it,
brought up to date in place by a later run; a change for a protected branch (or one the
approver asks for so) opened as a pull request from a new branch of the bot's own, never
written to the target; and the host's refusals as clear outcomes."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rich.console import Console

from agents.report import Finding, Severity, Source
from bot.app import Runtime, build_app
from bot.codehost.github import GitHub, GitHubCredentials
from bot.codehost.port import FileLines, PullRequest
from bot.codehost.review import ReviewDraft, draft_review, finding_marker
from bot.core.actor import Actor
from bot.core.commands import Approve, parse
from bot.store.models import ProposalRow
from bot.surfaces.shell import Shell
from bot.writes.pull_request import bot_branch
from tests.support.fakes.github_api import READ_ONLY_TOKEN, TOKEN
from tests.support.hosted import Hosted
from tests.support.processes import wait_for

POLICY = '[approvals]\napprovers = ["rev"]\n'
UNUSED = "import json\nimport os\nimport sys\n\n\ndef main():\n    return sys.argv\n"


@contextmanager
def running(hosted: Hosted, **extra: object) -> Iterator[Runtime]:
    app = build_app(hosted.settings(POLICY, **extra))
    app.start_jobs()
    try:
        yield app
    finally:
        app.close()


def shell_of(app: Runtime, user: str) -> tuple[Shell, io.StringIO]:
    out = io.StringIO()
    return Shell(app.service, user, Console(file=out, width=250)), out


def git(cwd: object, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def review_of(app: Runtime, run_id: str) -> ProposalRow:
    [review] = [p for p in app.service.proposals(run_id) if p.kind == "pr_review"]
    return review


def analyzed(app: Runtime, shell: Shell, words: str) -> str:
    shell.handle(words)
    assert shell.last_run is not None
    run = app.service.status(shell.last_run, Actor("ana", "shell"))
    assert run.status == "done", run.error
    return shell.last_run


# -- the review ----------------------------------------------------------------------------------


def test_an_approved_review_is_posted_once_and_a_rerun_updates_it_in_place(
    hosted: Hosted,
) -> None:
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        first = analyzed(app, ana, "analyze pr 7 in shop")
        report = app.service.report(first)
        assert report is not None
        proposal = review_of(app, first)
        assert proposal.target == "pr/7" and proposal.status == "proposed"
        assert hosted.fake.reviews("org/shop") == []  # nothing is posted before approval

        rev.handle(f"approve {first}/{proposal.pid}")
        assert f"{first}/{proposal.pid}: applied: review on pull request #7" in said.getvalue()
        [review] = hosted.fake.reviews("org/shop")
        assert review.event == "COMMENT"  # never APPROVE, never REQUEST_CHANGES
        assert review.commit_id == report.target.head_sha
        assert f"after rev approved {first}/{proposal.pid}" in review.body
        comments = hosted.fake.comments("org/shop")
        inline = {
            f.fingerprint
            for f in report.findings
            if f.file and f.start_line and f.severity.at_least(Severity.medium)
        }
        assert 0 < len(inline) < len(report.findings)  # the low ones are in the summary
        assert {c.path for c in comments} >= {"shop/config.py", "shop/orders.py"}
        assert "Not commented inline (low severity" in review.body
        assert len(comments) == len(inline)
        for comment in comments:  # each on its finding's line, and marked as the bot's
            [finding] = [
                f for f in report.findings if finding_marker(f.fingerprint) in comment.body
            ]
            assert (comment.path, comment.line, comment.side) == (
                finding.file,
                finding.start_line,
                "RIGHT",
            )
        key = next(c for c in comments if c.path == "shop/config.py")
        kept = {c.id: c.body for c in comments if c.path == "shop/orders.py"}

        # The key goes in a push; the eval and the rest stay.
        hosted.push({"shop/config.py": 'REGION = "eu-north-1"\n'}, "drop the key")
        second = analyzed(app, ana, "analyze pr 7")
        again = review_of(app, second)
        rev.handle(f"approve {second}/{again.pid}")
        assert f"{second}/{again.pid}: applied" in said.getvalue()
        assert len(hosted.fake.reviews("org/shop")) == 1  # no second review
        after = {c.id: c for c in hosted.fake.comments("org/shop")}
        assert set(after) == {c.id for c in comments}  # not one comment posted again
        assert after[key.id].resolved and after[key.id].body.startswith("**Resolved**")
        assert finding_marker(key.body.rsplit("chatops:finding ", 1)[1][:-4]) in after[key.id].body
        for comment_id in kept:  # updated in place: the same comment, the latest run named
            assert not after[comment_id].resolved
            assert f"run {second}" in after[comment_id].body
        [summary] = hosted.fake.reviews("org/shop")
        assert (
            f"run `{second}`" in summary.body and f"approved {second}/{again.pid}" in summary.body
        )

        # A new finding after that: one review of just it; the summary is still the first one.
        hosted.push({"shop/extra.py": "def run(code):\n    return eval(code)\n"}, "more")
        third = analyzed(app, ana, "analyze pr 7")
        rev.handle(f"approve {third}/{review_of(app, third).pid}")
        reviews = hosted.fake.reviews("org/shop")
        assert len(reviews) == 2 and all(r.event == "COMMENT" for r in reviews)
        added = [c for c in hosted.fake.comments("org/shop") if c.review_id == reviews[1].id]
        assert added and {c.path for c in added} == {"shop/extra.py"}
        assert hosted.fake.refused == []  # not one comment GitHub would have refused


def test_a_finding_outside_the_diff_is_never_sent_as_a_comment(hosted: Hosted) -> None:
    """GitHub refuses a whole review over one comment on a line outside the diff (422): such
    a finding goes in the summary, when the review is made and again when it is posted."""
    github = GitHub(GitHubCredentials(api_url=hosted.fake.url, token=TOKEN))
    pull = github.pull_request("org/shop", 7)
    assert pull.lines["shop/orders.py"].right >= {1, 7, 19}
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        report = app.service.report(run_id)
        assert report is not None
        outside = Finding(
            fingerprint="f" * 16,
            agent="code_review",
            category="bug",
            severity=Severity.high,
            confidence=0.9,
            file="shop/cart.py",  # not in the pull request at all
            start_line=1,
            title="a finding on a file the diff does not show",
            source=Source.heuristic,
        )
        draft = draft_review(report.model_copy(update={"findings": [outside]}), pull)
        assert draft.comments == [] and draft.elsewhere == ["f" * 16]
        assert "shop/cart.py:1" in draft.summary

        # A draft whose comment is off the diff GitHub shows at posting time (the line moved
        # out of every hunk): the writer checks again and lists it, and GitHub gets no such line.
        proposal = review_of(app, run_id)
        shown = ReviewDraft.model_validate_json(proposal.content)
        moved = shown.comments[0].model_copy(update={"line": 400})
        changed = shown.model_copy(update={"comments": [moved, *shown.comments[1:]]})
        from bot.store.review_posts import ReviewPostStore
        from bot.writes.review import ReviewWriter

        result = ReviewWriter(ReviewPostStore(app.engine)).post(github, changed, "x/P9", "rev")
        assert result.outcome == "applied", result.detail
        assert "1 no longer on the diff, listed in the summary" in result.detail
        sent = hosted.fake.comments("org/shop")
        assert 400 not in {c.line for c in sent} and len(sent) == len(shown.comments) - 1
        assert f"`{moved.path}:400`" in hosted.fake.reviews("org/shop")[0].body
        assert hosted.fake.refused == []


def test_the_lines_of_a_patch_are_those_github_lets_a_comment_be_on() -> None:
    from bot.codehost.lines import lines_of_patch

    patch = (
        "@@ -1,4 +1,5 @@\n import os\n-import sys\n+import json\n+import re\n \n def main():\n"
        "@@ -20,2 +21,2 @@ def later():\n-    return 1\n+    return 2\n end()\n"
        "\\ No newline at end of file"
    )
    lines = lines_of_patch(patch)
    assert lines.right == frozenset({1, 2, 3, 4, 5, 21, 22})
    assert lines.left == frozenset({1, 2, 3, 4, 20, 21})
    assert lines_of_patch(None) == FileLines()
    pull = PullRequest("o/r", 1, "", "", "open", "h", "b", "main", "s", ("a.py",), "r", {})
    finding = Finding(
        fingerprint="a" * 16,
        agent="x",
        category="bug",
        severity=Severity.low,
        confidence=1,
        file="a.py",
        start_line=3,
        title="t",
        source=Source.ruff,
    )
    from bot.codehost.review import line_for

    assert line_for(finding, pull.lines) is None  # a file the diff does not have: no line
    assert line_for(finding, {"a.py": lines_of_patch(None)}) is None  # no patch (binary, huge)
    ranged = finding.model_copy(update={"start_line": 19, "end_line": 22})
    assert line_for(ranged, {"a.py": lines}) == 21  # the first of its lines the diff shows


def test_the_review_refused_for_want_of_permission_or_rate_says_so(hosted: Hosted) -> None:
    with running(hosted, github_token=READ_ONLY_TOKEN) as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        proposal = review_of(app, run_id)
        rev.handle(f"approve {run_id}/{proposal.pid}")
        text = said.getvalue()
        assert f"{run_id}/{proposal.pid}: failed: GitHub denied the bot writing" in text
        assert "pull requests: write" in text
        assert hosted.fake.reviews("org/shop") == []

    hosted.fake.tokens.add("ghp_second")
    hosted.fake.writers.add("ghp_second")
    with running(hosted, github_token="ghp_second") as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        proposal = review_of(app, run_id)
        hosted.fake.secondary_next = 10
        hosted.fake.secondary_methods = {"POST"}  # the reads go through; the review does not
        hosted.fake.secondary_retry_after = 600  # too long to wait for: said, not slept
        before = len(hosted.fake.requests)
        rev.handle(f"approve {run_id}/{proposal.pid}")
        assert "secondary rate limit, writing a review on pull request #7" in said.getvalue()
        assert "Try again in 10 min" in said.getvalue()
        assert hosted.fake.reviews("org/shop") == []
        posts = [p for m, p, _ in hosted.fake.requests[before:] if m == "POST"]
        assert posts == ["/repos/org/shop/pulls/7/reviews"]  # asked once, not sent again


# -- a pull request for a protected branch ------------------------------------------------------


def pushed_branch(hosted: Hosted, name: str) -> str:
    """Branch `name` from main with a file ruff fixes (its report proposes a patch), pushed to
    the remote and fetched into the bot's clone; its head."""
    hosted.dev.branch(name, "main")
    hosted.dev.commit({"shop/cli.py": UNUSED}, "cli")
    hosted.dev.git("push", "-q", "origin", name)
    hosted.dev.checkout("main")
    git(hosted.clone, "fetch", "-q", "origin", f"{name}:{name}")
    return git(hosted.bare, "rev-parse", f"refs/heads/{name}")


def release_branch(hosted: Hosted) -> str:
    """A protected branch (release/*) whose report proposes a patch."""
    return pushed_branch(hosted, "release/2.0")


def test_an_approved_change_for_a_protected_branch_opens_one_pull_request(hosted: Hosted) -> None:
    target = release_branch(hosted)
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        assert patch.target == "release/2.0"

        # A click delivered twice, a second click, and the apply job delivered twice.
        ref, rev_actor = f"{run_id}/{patch.pid}", Actor("rev", "slack")
        first = app.service.decide(rev_actor, ref, "approve", event_key="slack:click:1")
        assert first.ok and "opening it as a pull request" in first.message
        replayed = app.service.decide(rev_actor, ref, "approve", event_key="slack:click:1")
        assert replayed.repeated and "already handled" in replayed.message
        second = app.service.decide(rev_actor, ref, "approve", event_key="slack:click:2")
        assert not second.ok and f"{ref} is already" in second.message  # approved or applying
        wait_for(
            lambda: (
                next(p for p in app.service.proposals(run_id) if p.id == patch.id).status
                in ("applied", "failed", "stale")
            ),
            30,
            "the apply",
        )
        assert app.service.approvals.apply(patch.id or 0) is None  # a redelivered job: nothing
        done = next(p for p in app.service.proposals(run_id) if p.id == patch.id)
        assert done.status == "applied", done.result
        head = bot_branch(run_id, patch.pid)
        [opened] = hosted.fake.opened("org/shop")
        assert (opened.head, opened.base) == (head, "release/2.0")
        assert f"#{opened.number}" in (done.result or "")
        assert "approved by rev" in opened.body and "requested by ana" in opened.body
        assert "### Findings of run" in opened.body and "F401" in opened.body
        # Nothing on the protected branch, on the remote or in the bot's clone.
        assert git(hosted.bare, "rev-parse", "refs/heads/release/2.0") == target
        assert git(hosted.clone, "rev-parse", "refs/heads/release/2.0") == target
        # The bot's branch: one commit on the target's head, the approved patch.
        pushed = git(hosted.bare, "rev-parse", f"refs/heads/{head}")
        assert git(hosted.bare, "rev-parse", f"{pushed}^") == target
        assert "import json" not in git(hosted.bare, "show", f"{pushed}:shop/cli.py")


def test_approve_as_pr_opens_a_pull_request_for_a_writable_branch_too(hosted: Hosted) -> None:
    before = pushed_branch(hosted, "feature/cli")
    assert parse("approve abc123def456/P1 as pr") == Approve("abc123def456/P1", True)
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        run_id = analyzed(app, ana, "analyze branch feature/cli in shop")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        rev.handle(f"approve {run_id}/{patch.pid} as pr")
        assert f"{run_id}/{patch.pid}: applied: opened pull request" in said.getvalue()
        [opened] = hosted.fake.opened("org/shop")
        assert (opened.head, opened.base) == (bot_branch(run_id, patch.pid), "feature/cli")
        assert git(hosted.bare, "rev-parse", "refs/heads/feature/cli") == before


def test_the_bots_branch_is_never_an_existing_one(hosted: Hosted) -> None:
    """Someone made a branch of the bot's name first: nothing is pushed over it, no pull
    request is opened, and the approval's outcome says why."""
    release_branch(hosted)
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        head = bot_branch(run_id, patch.pid)
        hosted.dev.git("push", "-q", "origin", f"main:refs/heads/{head}")
        theirs = git(hosted.bare, "rev-parse", f"refs/heads/{head}")
        rev.handle(f"approve {run_id}/{patch.pid}")
        assert f"{run_id}/{patch.pid}: failed: branch {head} already exists" in said.getvalue()
        done = next(p for p in app.service.proposals(run_id) if p.id == patch.id)
        assert done.status == "failed"
        assert f"branch {head} already exists on the remote" in (done.result or "")
        assert git(hosted.bare, "rev-parse", f"refs/heads/{head}") == theirs
        assert hosted.fake.opened("org/shop") == []


def test_without_a_code_host_a_protected_target_is_still_refused(hosted: Hosted) -> None:
    release_branch(hosted)
    settings = hosted.settings(POLICY)
    assert settings.chatops_config is not None
    settings.chatops_config.write_text(f'[repos.shop]\npath = "{hosted.clone}"\n{POLICY}', "utf-8")
    app = build_app(settings)
    app.start_jobs()
    try:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        outcome = app.service.decide(Actor("rev", "shell"), f"{run_id}/{patch.pid}", "approve")
        assert not outcome.ok and "protected branch" in outcome.message
        as_pr = app.service.decide(
            Actor("rev", "shell"), f"{run_id}/{patch.pid}", "approve", as_pull_request=True
        )
        assert not as_pr.ok and 'add github = "org/repo"' in as_pr.message
        assert hosted.fake.opened("org/shop") == []
    finally:
        app.close()


# -- a GitHub App instead of a token ---------------------------------------------------------------


def test_a_github_app_mints_its_installation_token_once_and_posts_with_it(hosted: Hosted) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from bot.codehost.port import CodeHostError

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    hosted.fake.app("123456", public)
    github = GitHub(
        GitHubCredentials(api_url=hosted.fake.url, app_id="123456", private_key=private)
    )
    assert github.pull_request("org/shop", 7).number == 7
    assert github.review_comments("org/shop", 7) == []
    assert hosted.fake.installation_tokens == ["ghs_installation_1"]  # one, kept
    assert hosted.fake.paths("/installation") == ["/repos/org/shop/installation"]

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    # Another App's id: githubkit keeps installation tokens and JWTs by App id in the process.
    stranger = GitHub(
        GitHubCredentials(api_url=hosted.fake.url, app_id="654321", private_key=wrong)
    )
    try:
        stranger.pull_request("org/shop", 7)
    except CodeHostError as exc:
        assert exc.problem == "auth" and "(401)" in exc.message
        assert "GITHUB_APP_ID or the App's private key" in exc.hint
    else:
        raise AssertionError("a JWT signed by another key was accepted")


# -- a worker that dies mid-write ------------------------------------------------------------------


class Died(BaseException):
    """The worker's process ending mid-write (no `except Exception` catches it)."""


def dying_after(host: object, method: str) -> None:
    """`host.method` does its write, then the worker dies before recording anything."""
    real = getattr(host, method)

    def write(*args: object, **kwargs: object) -> object:
        real(*args, **kwargs)
        raise Died

    setattr(host, method, write)


def test_a_pull_request_the_worker_died_before_opening_is_opened_on_recovery(
    hosted: Hosted,
) -> None:
    release_branch(hosted)
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        app.service.enqueue_apply = lambda proposal_id: None  # this test runs the apply itself
        assert app.service.decide(Actor("rev", "shell"), f"{run_id}/{patch.pid}", "approve").ok
        approvals = app.service.approvals
        assert approvals.code_hosts is not None
        host = approvals.code_hosts.host("github")
        dying_after(host, "pull_from")  # pushed, then died before opening the pull request
        with pytest.raises(Died):
            approvals.apply(patch.id or 0)
        del host.pull_from  # the next worker's adapter is whole
        head = bot_branch(run_id, patch.pid)
        assert git(hosted.bare, "rev-parse", f"refs/heads/{head}")  # the push landed
        assert hosted.fake.opened("org/shop") == []
        assert approvals.reconcile_abandoned(older_than_s=0) == [patch.id]
        done = next(p for p in app.service.proposals(run_id) if p.id == patch.id)
        assert done.status == "applied" and "opened pull request" in (done.result or "")
        assert approvals.reconcile_abandoned(older_than_s=0) == []  # settled once
        [opened] = hosted.fake.opened("org/shop")
        assert opened.head == head and "approved by rev" in opened.body


def test_a_review_the_worker_died_after_posting_is_found_on_recovery(hosted: Hosted) -> None:
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        proposal = review_of(app, run_id)
        app.service.enqueue_apply = lambda proposal_id: None
        assert app.service.decide(Actor("rev", "shell"), f"{run_id}/{proposal.pid}", "approve").ok
        approvals = app.service.approvals
        assert approvals.code_hosts is not None
        dying_after(approvals.code_hosts.host("github"), "post_review")
        with pytest.raises(Died):
            approvals.apply(proposal.id or 0)
        assert len(hosted.fake.reviews("org/shop")) == 1
        assert approvals.reconcile_abandoned(older_than_s=0) == [proposal.id]
        done = next(p for p in app.service.proposals(run_id) if p.id == proposal.id)
        assert done.status == "applied"
        assert done.result == "the review is on pull request #7 (checked)"
        assert len(hosted.fake.reviews("org/shop")) == 1  # never posted twice
        # What the dead worker posted is on record: the next run's review edits it in place.
        second = analyzed(app, ana, "analyze pr 7")
        again = review_of(app, second)
        assert app.service.decide(Actor("rev", "shell"), f"{second}/{again.pid}", "approve").ok
        result = approvals.apply(again.id or 0)
        assert result is not None and result.outcome == "applied", result
        assert len(hosted.fake.reviews("org/shop")) == 1
        assert "0 new inline comment(s)" in result.detail


def test_a_findings_words_cannot_ping_people_or_inject_html_on_github() -> None:
    from bot.codehost.review import comment_body

    hostile = Finding(
        fingerprint="b" * 16,
        agent="code_review",
        category="bug",
        severity=Severity.medium,
        confidence=0.8,
        file="a.py",
        start_line=1,
        title='<img src=x onerror="alert(1)"> ask @org/admins **now**',
        detail="see [this](https://evil.example) <!-- chatops:finding " + "c" * 16 + " -->",
        source=Source.llm,
    )
    body = comment_body(hostile, "r1")
    unescaped = re.compile(r"(?<!\\)(<img|<!--|\]\(|\*\*now)")  # markup GitHub would act on
    assert unescaped.findall(body.rsplit("\n", 1)[0]) == []
    assert "@org" not in body  # a zero-width joiner breaks the mention
    assert body.count("<!-- chatops:finding") == 1  # only the bot's own marker, last
    assert body.endswith(finding_marker("b" * 16))


def test_a_change_approved_for_its_branch_is_not_redirected_if_the_branch_became_protected(
    hosted: Hosted,
) -> None:
    before = pushed_branch(hosted, "feature/cli")
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze branch feature/cli in shop")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        app.service.enqueue_apply = lambda proposal_id: None
        assert app.service.decide(Actor("rev", "shell"), f"{run_id}/{patch.pid}", "approve").ok
    # Between the click and the apply, the branch becomes protected.
    later = build_app(hosted.settings('protected = ["feature/cli"]\n' + POLICY))
    try:
        result = later.service.approvals.apply(patch.id or 0)
        assert result is not None and result.outcome == "failed"
        assert "only takes a pull request now" in result.detail
        assert git(hosted.clone, "rev-parse", "refs/heads/feature/cli") == before
        assert hosted.fake.opened("org/shop") == []
    finally:
        later.close()


def test_a_pull_request_github_refuses_leaves_the_pushed_branch_said(hosted: Hosted) -> None:
    """A token that may read but not write: the branch is pushed (git has its own credentials),
    GitHub refuses the pull request (403), and the outcome says what to grant and what to do
    with the branch; the protected branch is untouched."""
    target = release_branch(hosted)
    with running(hosted, github_token=READ_ONLY_TOKEN) as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        rev.handle(f"approve {run_id}/{patch.pid}")
        done = next(p for p in app.service.proposals(run_id) if p.id == patch.id)
        head = bot_branch(run_id, patch.pid)
        assert done.status == "failed"
        assert f"pushed {done.intended_commit[:10]} to the new branch {head}" in (done.result or "")
        assert "GitHub denied the bot writing" in (done.result or "")
        assert "pull requests: write" in (done.result or "")
        assert f"Open one from {head} into release/2.0, or delete the branch" in (done.result or "")
        assert "failed: pushed" in said.getvalue()
        assert git(hosted.bare, "rev-parse", "refs/heads/release/2.0") == target
        assert hosted.fake.opened("org/shop") == []


def test_the_lease_refuses_a_branch_made_after_the_check_and_a_502_is_not_a_second_write(
    hosted: Hosted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone pushes the bot's branch name between its check and its push: git's lease
    (`--force-with-lease=<branch>:`) refuses, nothing is written over theirs. Then GitHub makes
    a review and answers 502: the bot does not send it again, it finds it."""
    import bot.writes.pull_request as opening

    release_branch(hosted)
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        head = bot_branch(run_id, patch.pid)
        hosted.dev.git("push", "-q", "origin", f"main:refs/heads/{head}")
        theirs = git(hosted.bare, "rev-parse", f"refs/heads/{head}")
        monkeypatch.setattr(opening, "remote_head", lambda repo, branch: None)  # the check ran
        app.service.enqueue_apply = lambda proposal_id: None
        assert app.service.decide(Actor("rev", "shell"), f"{run_id}/{patch.pid}", "approve").ok
        result = app.service.approvals.apply(patch.id or 0)
        assert result is not None and result.outcome == "failed"
        assert f"branch {head} already exists on the remote" in result.detail
        assert git(hosted.bare, "rev-parse", f"refs/heads/{head}") == theirs
        assert hosted.fake.opened("org/shop") == []

        pr_run = analyzed(app, ana, "analyze pr 7 in shop")
        review = review_of(app, pr_run)
        assert app.service.decide(Actor("rev", "shell"), f"{pr_run}/{review.pid}", "approve").ok
        hosted.fake.made_then_502 = 1
        posted = app.service.approvals.apply(review.id or 0)
        assert posted is not None and posted.outcome == "applied", posted
        [kept] = hosted.fake.reviews("org/shop")
        assert hosted.fake.paths("/pulls/7/reviews").count("/repos/org/shop/pulls/7/reviews") == 2
        sent = [p for m, p, _ in hosted.fake.requests if m == "POST" and p.endswith("/reviews")]
        assert len(sent) == 1  # the POST once; the other request is the GET that found it
        assert hosted.fake.comments("org/shop")


def test_a_partial_run_resolves_nothing(hosted: Hosted) -> None:
    """A part that did not run found nothing: its earlier findings are not 'gone'."""
    from bot.store.review_posts import ReviewPostStore
    from bot.writes.review import ReviewWriter

    github = GitHub(GitHubCredentials(api_url=hosted.fake.url, token=TOKEN))
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        draft = ReviewDraft.model_validate_json(review_of(app, run_id).content)
        writer = ReviewWriter(ReviewPostStore(app.engine))
        assert writer.post(github, draft, f"{run_id}/P8", "rev").outcome == "applied"
        partial = draft.model_copy(update={"comments": [], "findings": [], "complete": False})
        result = writer.post(github, partial, f"{run_id}/P9", "rev")
        assert result.outcome == "applied"
        assert "none resolved, as part of the analysis did not run" in result.detail
        assert not any(c.resolved for c in hosted.fake.comments("org/shop"))
        assert not any(c.body.startswith("**Resolved**") for c in hosted.fake.comments("org/shop"))
        whole = partial.model_copy(update={"complete": True})
        assert "resolved" in writer.post(github, whole, f"{run_id}/P10", "rev").detail
        assert all(c.resolved for c in hosted.fake.comments("org/shop"))


def test_two_reviews_approved_at_once_post_one_summary(hosted: Hosted) -> None:
    """Two runs' reviews of one pull request applied by two workers at the same moment: one
    posts the review, the other waits for it, then edits it in place."""
    import threading

    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        runs = [analyzed(app, ana, "analyze pr 7 in shop") for _ in range(2)]
        reviews = [review_of(app, run_id) for run_id in runs]
        app.service.enqueue_apply = lambda proposal_id: None
        for run_id, review in zip(runs, reviews, strict=True):
            assert app.service.decide(Actor("rev", "shell"), f"{run_id}/{review.pid}", "approve").ok
        hosted.fake.latency_s = 0.05  # both would read "no review yet" before either posts
        results: list[object] = []

        def apply(proposal: ProposalRow) -> None:
            results.append(app.service.approvals.apply(proposal.id or 0))

        workers = [threading.Thread(target=apply, args=(review,)) for review in reviews]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert [getattr(r, "outcome", None) for r in results] == ["applied", "applied"], results
        assert len(hosted.fake.reviews("org/shop")) == 1
        paths = {(c.path, c.line) for c in hosted.fake.comments("org/shop")}
        assert len(paths) == len(hosted.fake.comments("org/shop"))  # no comment twice


def test_a_clone_without_origin_says_where_the_branch_would_go(hosted: Hosted) -> None:
    release_branch(hosted)
    git(hosted.clone, "remote", "remove", "origin")
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        rev, said = shell_of(app, "rev")
        run_id = analyzed(app, ana, "analyze branch release/2.0 in shop against main")
        [patch] = [p for p in app.service.proposals(run_id) if p.kind == "patch"]
        rev.handle(f"approve {run_id}/{patch.pid}")
        done = next(p for p in app.service.proposals(run_id) if p.id == patch.id)
        assert done.status == "failed"
        assert "cannot ask the remote for chatops/" in (done.result or "")
        assert "make that the GitHub repository" in (done.result or "")
        assert "nothing was written" in said.getvalue()
        assert hosted.fake.opened("org/shop") == []


def test_a_conversation_github_will_not_resolve_is_said(hosted: Hosted) -> None:
    from bot.store.review_posts import ReviewPostStore
    from bot.writes.review import ReviewWriter

    github = GitHub(GitHubCredentials(api_url=hosted.fake.url, token=TOKEN))
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        draft = ReviewDraft.model_validate_json(review_of(app, run_id).content)
        writer = ReviewWriter(ReviewPostStore(app.engine))
        assert writer.post(github, draft, f"{run_id}/P8", "rev").outcome == "applied"
        hosted.fake.graphql_refused = True
        gone = draft.model_copy(update={"comments": [], "findings": []})
        result = writer.post(github, gone, f"{run_id}/P9", "rev")
        count = len(draft.comments)
        assert f"{count} resolved, {count} of them still open as conversations" in result.detail
        assert all(c.body.startswith("**Resolved**") for c in hosted.fake.comments("org/shop"))
        assert not any(c.resolved for c in hosted.fake.comments("org/shop"))


def test_a_review_for_a_closed_or_moved_pull_request_posts_nothing(hosted: Hosted) -> None:
    from bot.store.review_posts import ReviewPostStore
    from bot.writes.review import ReviewWriter

    github = GitHub(GitHubCredentials(api_url=hosted.fake.url, token=TOKEN))
    with running(hosted) as app:
        ana, _ = shell_of(app, "ana")
        run_id = analyzed(app, ana, "analyze pr 7 in shop")
        draft = ReviewDraft.model_validate_json(review_of(app, run_id).content)
        writer = ReviewWriter(ReviewPostStore(app.engine))
        hosted.fake.projects["org/shop"].pulls[7].state = "closed"
        closed = writer.post(github, draft, f"{run_id}/P8", "rev")
        assert (closed.outcome, closed.detail) == (
            "failed",
            "pull request #7 is closed; nothing was posted",
        )
        hosted.fake.projects["org/shop"].pulls[7].state = "open"
        head = hosted.push({"shop/more.py": "X = 1\n"}, "more")
        moved = writer.post(github, draft, f"{run_id}/P9", "rev")
        assert moved.outcome == "stale" and f"moved to {head[:10]}" in moved.detail
        assert hosted.fake.reviews("org/shop") == []
