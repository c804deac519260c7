"""The tables. The `runs` row is the ledger of a job: the queue only carries its id."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from bot.store.types import UTCDateTime, utcnow


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    # Stepped: paused at a human checkpoint after an agent (no worker holds it).
    waiting = "waiting"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


# A run in one of these has ended: nothing more happens to it.
FINAL = (RunStatus.done, RunStatus.failed, RunStatus.cancelled)


class ProposalStatus(StrEnum):
    """proposed → approved → applying → applied; or rejected, expired, stale, failed."""

    proposed = "proposed"
    approved = "approved"
    applying = "applying"
    applied = "applied"
    rejected = "rejected"
    expired = "expired"
    stale = "stale"
    failed = "failed"


def _when(nullable: bool = False, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_lease", "status", "lease_until"),
        # A reaction names a message: find its run by the parent's or the report's reference.
        Index("ix_runs_message", "message"),
        Index("ix_runs_report_message", "report_message"),
        # A re-run is compared with the previous run of the same branch.
        Index("ix_runs_repo_target", "repo", "target"),
    )

    id: str = Field(primary_key=True, max_length=32)
    requester: str = Field(index=True, max_length=64)
    surface: str = Field(max_length=16)  # cli, shell, slack
    repo: str = Field(max_length=64)  # the configured name
    kind: str = Field(default="branch", max_length=16)
    target: str = Field(max_length=255)  # the branch as typed
    ticket: str | None = Field(default=None, index=True, max_length=32)  # for kind "ticket"
    base: str | None = Field(default=None, max_length=255)
    status: str = Field(default="queued", index=True, max_length=16)
    stop_requested: bool = False
    stop_requested_by: str | None = Field(default=None, max_length=64)
    worker: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    progress: str | None = Field(default=None, sa_column=Column(Text))  # JSON of agent states
    # Where the run reports, in its surface's own terms (`core.messages.MessageRef`; Slack:
    # the channel, the parent message's ts, the report's ts). `report_message` holds a
    # "pending:..." claim while a report is being posted.
    place: str | None = Field(default=None, max_length=255)
    message: str | None = Field(default=None, max_length=128)
    report_message: str | None = Field(default=None, max_length=128)
    # The thread the run's messages go in, when it is not the run's own parent message: a
    # re-run of a branch posts into the thread of the branch's first run there.
    thread: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))
    enqueued_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    started_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    duration_ms: int | None = None  # from the last claim to the end
    # A human checkpoint after each agent: the run pauses ("waiting", no worker, no thread)
    # with what the next agent needs in `checkpoint` (JSON of `agents.pipeline.Saved`), until
    # a person continues or stops it, or `wait_until` passes (then it stops).
    step: bool = False
    checkpoint: str | None = Field(default=None, sa_column=Column(Text))
    wait_until: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class StoredReport(SQLModel, table=True):
    """The report contract as JSON, one per run: the primary key makes a second impossible."""

    __tablename__ = "reports"

    run_id: str = Field(primary_key=True, foreign_key="runs.id", max_length=32)
    risk_level: str = Field(max_length=16)
    risk_score: int
    cost_usd: float = 0.0
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class FindingRow(SQLModel, table=True):
    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("run_id", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, max_length=32)
    repo: str = Field(max_length=64)
    fingerprint: str = Field(index=True, max_length=32)
    agent: str = Field(max_length=32)
    source: str = Field(max_length=16)
    category: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    file: str | None = Field(default=None, max_length=1024)
    start_line: int | None = None
    title: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))


class ProposalRow(SQLModel, table=True):
    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("run_id", "pid"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, max_length=32)
    pid: str = Field(max_length=16)  # P1, P2 ... within the run
    kind: str = Field(max_length=16)
    agent: str = Field(max_length=32)
    title: str = Field(sa_column=Column(Text, nullable=False))
    target: str = Field(max_length=1024)
    base_sha: str = Field(max_length=64)
    content: str = Field(sa_column=Column(Text, nullable=False))
    content_sha256: str = Field(max_length=64)
    status: str = Field(default="proposed", index=True, max_length=16)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    result: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))
    # The commit an apply built, recorded before it moves the branch: a worker that dies in
    # between leaves enough to tell, on recovery, whether the write landed.
    intended_commit: str | None = Field(default=None, max_length=64)
    apply_started_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    # How an approved git write lands: "branch" (committed to its branch) or "pull_request"
    # (a new branch of the bot's own, and a pull request from it into the target). Set when
    # approved: by the approver's choice, or because the target is protected.
    via: str | None = Field(default=None, max_length=16)


class ApprovalRow(SQLModel, table=True):
    __tablename__ = "approvals"

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposals.id", index=True)
    user: str = Field(max_length=64)
    decision: str = Field(max_length=16)  # approved, rejected
    reason: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = Field(default_factory=utcnow, sa_column=_when())


class FeedbackRow(SQLModel, table=True):
    """The interaction log: one vote per user per item (the latest wins), with what was voted
    on: the output as shown, the agent, the model and the prompt version that produced it."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("run_id", "fingerprint", "user"),
        Index("ix_feedback_repo_fingerprint", "repo", "fingerprint"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, max_length=32)
    fingerprint: str = Field(default="", max_length=32)  # "" for the whole report
    user: str = Field(max_length=64)
    vote: int  # +1 or -1
    reason: str | None = Field(default=None, sa_column=Column(Text))
    correction: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))
    repo: str = Field(default="", max_length=64)
    agent: str = Field(default="", max_length=64)  # "report" for a vote on the whole report
    category: str = Field(default="", max_length=64)
    rule: str = Field(default="", max_length=64)
    file: str | None = Field(default=None, max_length=1024)
    source: str = Field(default="", max_length=16)
    model: str = Field(default="", max_length=64)  # "" when no model produced it
    prompt_version: str = Field(default="", max_length=32)
    output: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    via: str = Field(default="button", max_length=16)  # button, reaction, shell


class LearningRow(SQLModel, table=True):
    """A learning curated from the votes. `key` makes curation idempotent; a forgotten row
    stays (with who forgot it) so curation does not bring it back."""

    __tablename__ = "learnings"
    __table_args__ = (UniqueConstraint("repo", "key"),)

    id: str = Field(primary_key=True, max_length=16)  # L + 6 hex digits
    repo: str = Field(index=True, max_length=64)
    agent: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # rule, note, example, suppress
    key: str = Field(max_length=128)
    text: str = Field(sa_column=Column(Text, nullable=False))
    category: str | None = Field(default=None, max_length=64)
    path_glob: str | None = Field(default=None, max_length=255)
    fingerprint: str | None = Field(default=None, max_length=32)
    votes: int = 0
    prompt_generation: int = 0  # the curation pass that made it
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    forgotten_by: str | None = Field(default=None, max_length=64)
    forgotten_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class DigestRow(SQLModel, table=True):
    """One digest per channel and period: the unique key is the claim, taken before posting."""

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("channel", "period_key"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=64)
    period_key: str = Field(max_length=64)
    status: str = Field(default="claimed", max_length=16)  # claimed, posted
    worker: str = Field(default="", max_length=128)
    claimed_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    posted_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    ts: str | None = Field(default=None, max_length=32)


class AuditEvent(SQLModel, table=True):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_when())
    actor: str = Field(max_length=64)
    action: str = Field(index=True, max_length=32)
    outcome: str = Field(max_length=16)  # granted, denied, ok, failed
    run_id: str | None = Field(default=None, index=True, max_length=32)
    proposal_id: int | None = None
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))


class LLMCallRow(SQLModel, table=True):
    __tablename__ = "llm_calls"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, max_length=32)
    agent: str = Field(max_length=64)
    model: str = Field(max_length=64)
    prompt_version: str = Field(max_length=32)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    outcome: str = Field(max_length=32)
    at: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))


class WorkerRow(SQLModel, table=True):
    """A consumer process, as it last said it was alive (`chatops status` lists them)."""

    __tablename__ = "workers"

    id: str = Field(primary_key=True, max_length=128)  # host:pid:random
    host: str = Field(max_length=255)
    pid: int
    kind: str = Field(max_length=16)  # worker, serve, shell
    scheduler: bool = False
    state: str = Field(default="running", max_length=16)  # running, stopping, stopped
    started_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    last_seen: datetime = Field(default_factory=utcnow, sa_column=_when(index=True))


class ProcessedEvent(SQLModel, table=True):
    """A surface event already acted on (a Slack event_id, a command fingerprint): a retry of it
    finds the row and starts nothing. Shared by every instance through the database."""

    __tablename__ = "processed_events"

    key: str = Field(primary_key=True, max_length=255)
    run_id: str | None = Field(default=None, max_length=32)
    at: datetime = Field(default_factory=utcnow, sa_column=_when())


class PromptVersionRow(SQLModel, table=True):
    __tablename__ = "prompt_versions"

    version: str = Field(primary_key=True, max_length=32)
    agent: str = Field(primary_key=True, max_length=64)
    first_seen: datetime = Field(default_factory=utcnow, sa_column=_when())
    # The system prompt's stable prefix: the interaction log's "prompt" for this version.
    text: str | None = Field(default=None, sa_column=Column(Text))


class InboxRow(SQLModel, table=True):
    """A Slack delivery (a command, a click, an event), recorded before it is acknowledged. The
    key is the delivery's de-duplication key, so a retried delivery finds its row. The process
    that acked it handles it; if that process dies, a reaper handles it (`attempts` bounded)."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_status_lease", "status", "lease_until"),)

    key: str = Field(primary_key=True, max_length=255)
    kind: str = Field(max_length=32)  # which handler: command, mention, approve, vote ...
    payload: str = Field(sa_column=Column(Text, nullable=False))  # the request body, as JSON
    status: str = Field(default="pending", max_length=16)  # pending, done, failed
    worker: str | None = Field(default=None, max_length=128)
    lease_until: datetime | None = Field(default=None, sa_column=_when(nullable=True))
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    received_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    done_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class AnswerRow(SQLModel, table=True):
    """A model answer kept for reuse, by the hash of everything that decided it (see
    `agents.reuse`). Bounded by age since last use and by total size (`AnswerCache.prune`)."""

    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_used_at", "used_at"),)

    key: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # answer (a whole call), unit (one unit's part), count
    value: str = Field(sa_column=Column(Text, nullable=False))
    size: int = 0  # bytes of `value`, for the size bound
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    used_at: datetime = Field(default_factory=utcnow, sa_column=_when())


class FollowRow(SQLModel, table=True):
    """A branch followed in a place: when its head moves, it is analyzed again and the delta
    goes in its thread. `head` is the last head seen; moving it is the claim on that head."""

    __tablename__ = "follows"
    __table_args__ = (UniqueConstraint("repo", "branch", "place", name="uq_follows_place"),)

    id: int | None = Field(default=None, primary_key=True)
    repo: str = Field(max_length=64)
    branch: str = Field(max_length=255)
    place: str = Field(max_length=255)  # where the runs report (a Slack channel, "shell")
    surface: str = Field(max_length=16)
    requester: str = Field(max_length=64)  # who asked to follow: the runs are theirs
    team: str | None = Field(default=None, max_length=64)
    head: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when())
    checked_at: datetime | None = Field(default=None, sa_column=_when(nullable=True))


class ReviewPostRow(SQLModel, table=True):
    """What the bot posted on a pull request, by the code host's id, so that a later review
    updates it in place: `key` "review" is the summary review; "F:<fingerprint>" one finding's
    inline comment, `status` open or resolved (its finding gone)."""

    __tablename__ = "review_posts"
    __table_args__ = (
        UniqueConstraint("host", "project", "number", "key", name="uq_review_posts_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=16)
    project: str = Field(max_length=255)
    number: int
    key: str = Field(max_length=80)
    host_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(default="open", max_length=16)
    run_id: str = Field(max_length=32)  # the run whose review last wrote it
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_when())
