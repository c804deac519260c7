"""The human checkpoint after each agent of a stepped run (`analyze branch NAME step`).

A stepped run ends its job after each agent: the worker keeps what the next agent needs in the
run row (`agents.pipeline.Saved` as JSON) and sets it "waiting" with a deadline. Nothing holds
a thread or a lease while it waits; a restart or another instance finds the same row. Continue
queues the next leg (the queue carries only the run id), Stop queues a leg that writes the
report of what was let through, the deadline stops it the same way (the reaper). A finding the
human drops is a 👎 with its reason, and it leaves the kept state: later agents never see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agents.errors import shown
from agents.pipeline import Saved
from bot.core.actor import Actor, UserError
from bot.core.feedback import FeedbackService, Voted
from bot.store.models import Run
from bot.store.runs import RunStore


@dataclass(frozen=True)
class Dropped:
    run: Run
    saved: Saved  # the checkpoint without the finding
    voted: Voted

    @property
    def message(self) -> str:
        return (
            f"Dropped {self.voted.item} of run {self.run.id} as not a problem; your 👎 and its "
            "reason are recorded. Later agents and the report go without it."
        )


def saved_of(run: Run) -> Saved | None:
    """What a waiting run keeps for its next agent (None: it is not waiting)."""
    if run.status != "waiting" or not run.checkpoint:
        return None
    return Saved.model_validate_json(run.checkpoint)


class Checkpoints:
    def __init__(
        self,
        store: RunStore,
        feedback: FeedbackService,
        *,
        enqueue: Callable[[str], None],
        may_steer: Callable[[Actor, Run, str], None],
    ) -> None:
        """`may_steer(actor, run, verb)` raises the UserError that refuses a person who is
        neither the run's requester nor an approver (the rule `stop` uses)."""
        self.store = store
        self.feedback = feedback
        self.enqueue = enqueue
        self.may_steer = may_steer

    def waiting(self, actor: Actor, run_id: str) -> tuple[Run, Saved]:
        """The run and its checkpoint, for a person allowed to decide it."""
        run = self.store.get(run_id.strip())
        if run is None:
            raise UserError(f"No run {shown(run_id)!r}.", "`status` lists your recent runs.")
        self.may_steer(actor, run, "continue")
        saved = saved_of(run)
        if saved is None:
            raise UserError(
                f"Run {run.id} is not waiting at a checkpoint (it is {run.status}).",
                f"`status {run.id}` says where it is.",
            )
        return run, saved

    def go_on(self, actor: Actor, run_id: str) -> Run:
        """Continue: the next agent runs, in whichever worker takes the job. A second click
        finds the run no longer waiting and is told so."""
        run, _ = self.waiting(actor, run_id)
        if not self.store.resume(run.id):
            raise UserError(f"Run {run.id} already went on (or was stopped).")
        self.enqueue(run.id)
        resumed = self.store.get(run.id)
        assert resumed is not None
        return resumed

    def drop(self, actor: Actor, run_id: str, item: str, reason: str, *, via: str) -> Dropped:
        """A finding of the checkpoint is not a problem: a 👎 with `reason`, and out of what
        later agents see and of the report (which says the human dropped it)."""
        text = reason.strip()
        if not text:
            raise UserError("Say why it is not a problem.", "One sentence is enough.")
        for _ in range(5):  # two drops at once: each swaps the state it read, one at a time
            run, saved = self.waiting(actor, run_id)
            finding = saved.find(item)
            if finding is None:
                raise UserError(
                    f"The checkpoint has no finding {shown(item)!r}: it has "
                    f"{len(saved.findings)} so far.",
                    "Findings so far are numbered F1, F2 ... at the checkpoint.",
                )
            label = f"F{saved.findings.index(finding) + 1}"
            after = saved.without(finding, actor.user, text[:500])
            assert run.checkpoint is not None
            if self.store.replace_checkpoint(run.id, run.checkpoint, after.model_dump_json()):
                calls = [c for c in saved.calls if c.agent == finding.agent]
                model = next((c.model for c in calls if c.outcome == "ok"), "")
                voted = self.feedback.vote_before_report(
                    actor,
                    run,
                    finding,
                    label,
                    model=model if finding.source.value == "llm" else "",
                    prompt_versions=saved.prompt_versions,
                    via=via,
                    reason=text,
                )
                return Dropped(run, after, voted)
        raise UserError(f"Run {run_id} changed while dropping; try again.")
