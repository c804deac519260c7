"""Post an approved review on its pull request, or bring the bot's earlier one up to date:
the summary review edited in place, each finding's comment edited (not posted again), the
comments whose finding is gone marked resolved, and only new findings posted, in one review.

Called by the apply job only. The review's event is always COMMENT (`CodeHost.post_review`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.codehost.port import (
    CodeHost,
    CodeHostError,
    FileLines,
    HostComment,
    PostedReview,
    ReviewComment,
)
from bot.codehost.review import (
    DraftComment,
    ReviewDraft,
    addendum_marker,
    finding_marker,
    resolved_body,
    review_marker,
)
from bot.store.review_posts import SUMMARY, PullRef, ReviewPostStore, finding_key
from bot.writes.git import WriteResult


@dataclass
class _Tally:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    resolved: int = 0
    deleted: int = 0  # the bot's comments someone deleted: not posted again
    moved_out: int = 0  # no longer on a line of the diff GitHub shows: listed instead
    wrote: bool = False  # something is on the host already (a failure after it is unsure)
    open_threads: int = 0  # resolved comments whose conversation GitHub did not mark resolved


# One apply at a time per pull request: the next waits this long for the claim; a claim this
# old belongs to a worker that died, and is taken over.
CLAIM_WAIT_S = 60.0
CLAIM_STALE_S = 600.0


class ReviewWriter:
    def __init__(self, posts: ReviewPostStore) -> None:
        self.posts = posts

    def post(self, host: CodeHost, draft: ReviewDraft, ref: str, approver: str) -> WriteResult:
        where = PullRef(host.name, draft.project, draft.number)
        deadline = time.monotonic() + CLAIM_WAIT_S
        while not self.posts.claim(where, ref, stale_after_s=CLAIM_STALE_S):
            if time.monotonic() > deadline:
                return WriteResult(
                    "failed",
                    f"another review of pull request #{draft.number} was being posted for "
                    f"{CLAIM_WAIT_S:.0f} s; nothing written, analyze it again to post this one",
                )
            time.sleep(0.2)
        try:
            return self._claimed(host, draft, ref, approver)
        finally:
            self.posts.release(where, ref)

    def _claimed(self, host: CodeHost, draft: ReviewDraft, ref: str, approver: str) -> WriteResult:
        tally = _Tally()
        try:
            return self._post(host, draft, ref, approver, tally)
        except CodeHostError as exc:
            said = f"{exc.message} {exc.hint}".strip()
            if not tally.wrote:
                return WriteResult("failed", said)
            return WriteResult(
                "failed",
                f"{said} Part of the review was written before that ({_said(draft, tally, '')}); "
                "look on the pull request, and approve the next run's review to finish it",
                unsure=True,
            )

    def adopt(
        self, host: CodeHost, project: str, number: int, reviews: list[int], run_id: str
    ) -> None:
        """What a dead worker posted, recorded from the host (recovery): `reviews` are the ids
        of the reviews carrying the proposal's marker, the first its summary if none is known;
        each of their comments is recorded by the finding its marker names."""
        where = PullRef(host.name, project, number)
        if SUMMARY not in self.posts.posts(where) and reviews:
            self.posts.keep(where, SUMMARY, min(reviews), run_id)
        made = [c for c in host.review_comments(project, number) if c.review_id in reviews]
        self._keep_made(where, made, run_id)

    def _post(
        self, host: CodeHost, draft: ReviewDraft, ref: str, approver: str, tally: _Tally
    ) -> WriteResult:
        pull = host.pull_request(draft.project, draft.number)
        if pull.state != "open":
            return WriteResult(
                "failed", f"pull request #{pull.number} is {pull.state}; nothing was posted"
            )
        if pull.head_sha != draft.head_sha:
            return WriteResult(
                "stale",
                f"pull request #{pull.number} moved to {pull.head_sha[:10]} since this review "
                f"was made of {draft.head_sha[:10]}; analyze it again for a review of its head",
            )
        where = PullRef(host.name, draft.project, draft.number)
        posts = self.posts.posts(where)
        live = {
            comment.id: comment for comment in host.review_comments(draft.project, draft.number)
        }
        # Exactly the lines GitHub's diff shows now: a comment elsewhere would be refused (422).
        inline: list[DraftComment] = []
        moved: list[DraftComment] = []
        for comment in draft.comments:
            shown = pull.lines.get(comment.path, FileLines())
            (inline if comment.line in shown.right else moved).append(comment)
        tally.moved_out = len(moved)
        fresh: list[DraftComment] = []
        edits: list[tuple[int, DraftComment]] = []
        for comment in inline:
            known = posts.get(finding_key(comment.fingerprint))
            if known is None:
                fresh.append(comment)
            elif known.host_id in live:
                edits.append((known.host_id, comment))
            else:
                tally.deleted += 1
        summary = _summary(draft, moved, ref, approver)
        # First the one write that can be refused as a whole; nothing else is written before it.
        earlier = posts.get(SUMMARY)
        posted_url = ""
        if earlier is None or fresh:
            body = summary if earlier is None else _addendum(draft, len(fresh), ref)
            try:
                review = host.post_review(
                    draft.project,
                    draft.number,
                    draft.head_sha,
                    body,
                    [ReviewComment(c.path, c.line, "RIGHT", c.body) for c in fresh],
                )
            except CodeHostError as exc:
                # A 5xx may still have made it (the adapter never sends a write twice): it is
                # looked for by its marker before the apply is called failed.
                marker = review_marker(ref) if earlier is None else addendum_marker(ref)
                made_anyway = (
                    host.reviews_marked(draft.project, draft.number, marker)
                    if exc.problem == "unavailable"
                    else []
                )
                if not made_anyway:
                    raise
                review = PostedReview(min(made_anyway), draft.url)
            tally.wrote, tally.new, posted_url = True, len(fresh), review.url
            if earlier is None:  # kept before anything else can fail
                self.posts.keep(where, SUMMARY, review.id, draft.run_id)
            made = host.review_comments(draft.project, draft.number)
            self._keep_made(where, [c for c in made if c.review_id == review.id], draft.run_id)
        for comment_id, comment in edits:
            if live[comment_id].body != comment.body:
                host.update_comment(draft.project, comment_id, comment.body)
                tally.wrote = True
                tally.updated += 1
            else:
                tally.unchanged += 1
            self.posts.keep(where, finding_key(comment.fingerprint), comment_id, draft.run_id)
        tally.resolved = self._resolve_gone(host, draft, where, live, tally)
        if earlier is not None:  # last: its marker says this apply got to the end
            host.update_review(draft.project, draft.number, earlier.host_id, summary)
            self.posts.keep(where, SUMMARY, earlier.host_id, draft.run_id)
        return WriteResult("applied", _said(draft, tally, posted_url or draft.url))

    def _keep_made(self, where: PullRef, made: list[HostComment], run_id: str) -> None:
        for comment in made:
            fingerprint = _fingerprint_in(comment.body)
            if fingerprint is not None:
                self.posts.keep(where, finding_key(fingerprint), comment.id, run_id)

    def _resolve_gone(
        self,
        host: CodeHost,
        draft: ReviewDraft,
        where: PullRef,
        live: dict[int, HostComment],
        tally: _Tally,
    ) -> int:
        if not draft.complete:  # a part that did not run found nothing: nothing is gone
            return 0
        still = {finding_key(fingerprint) for fingerprint in draft.findings}
        resolved = 0
        for key, row in self.posts.posts(where).items():
            if not key.startswith("F:") or key in still or row.status != "open":
                continue
            if row.host_id in live:
                body = resolved_body(live[row.host_id].body, draft.head_sha, draft.run_id)
                host.update_comment(draft.project, row.host_id, body)
                tally.wrote = True
                if not host.resolve_thread(draft.project, draft.number, row.host_id):
                    tally.open_threads += 1
            self.posts.keep(where, key, row.host_id, draft.run_id, status="resolved")
            resolved += 1
        return resolved


def _fingerprint_in(body: str) -> str | None:
    start = body.rfind("<!-- chatops:finding ")
    if start < 0:
        return None
    rest = body[start + len("<!-- chatops:finding ") :]
    fingerprint, _, _ = rest.partition(" -->")
    return fingerprint if finding_marker(fingerprint) in body else None


def _summary(draft: ReviewDraft, moved: list[DraftComment], ref: str, approver: str) -> str:
    text = draft.summary
    if moved:
        text += "\n\nNot on a line of the diff GitHub shows now, so not commented inline:\n"
        text += "\n".join(f"- `{c.path}:{c.line}`" for c in moved)
    return f"{text}\n\nPosted by chatops after {approver} approved {ref}.\n{review_marker(ref)}"


def _addendum(draft: ReviewDraft, count: int, ref: str) -> str:
    return (
        f"{count} new finding(s) at `{draft.head_sha[:10]}` (run `{draft.run_id}`); the bot's "
        f"first review above has the updated summary.\n{addendum_marker(ref)}"
    )


def _said(draft: ReviewDraft, tally: _Tally, url: str) -> str:
    parts = [f"{tally.new} new inline comment(s)"]
    if tally.updated:
        parts.append(f"{tally.updated} updated in place")
    if tally.unchanged:
        parts.append(f"{tally.unchanged} unchanged")
    if tally.resolved:
        parts.append(f"{tally.resolved} resolved")
    if tally.open_threads:
        parts.append(
            f"{tally.open_threads} of them still open as conversations (GitHub would not mark "
            "them resolved; their text says so)"
        )
    if tally.deleted:
        parts.append(f"{tally.deleted} deleted by someone, not posted again")
    if tally.moved_out:
        parts.append(f"{tally.moved_out} no longer on the diff, listed in the summary")
    if not draft.complete:
        parts.append("none resolved, as part of the analysis did not run")
    return f"review on pull request #{draft.number}: {', '.join(parts)}" + (
        f" ({url})" if url else ""
    )
