"""A finding's life across runs of one branch: new, still open, or resolved.

Findings are matched by fingerprint, which never depends on a line number (see
`agents.report.fingerprint`), so a finding stays the same finding while lines above it move. A
finding of the previous run that is gone now is `resolved` only when this run looked again with
the same check: the same agent finished, its analyzer ran, and its file was analyzed (and, for
the model's findings, reviewed by the model). Anything else it cannot tell, so it says nothing.
"""

from __future__ import annotations

from agents.report import Finding, Report, SeenIn, Source, Votes

# Which part of the report's `not_run` stands for each analyzer source.
_PART = {
    Source.ruff: "ruff",
    Source.bandit: "bandit",
    Source.secrets: "detect-secrets",
}


def compare(report: Report, previous: Report) -> Report:
    """`report` with each finding marked `new` or `open` against `previous` (the earlier run of
    the same branch), and `resolved` listing what went away."""
    before = {f.fingerprint: f for f in previous.findings}
    earlier = SeenIn(run_id=previous.run_id, head_sha=previous.target.head_sha)
    findings = []
    for finding in report.findings:
        old = before.get(finding.fingerprint)
        if old is None:
            findings.append(finding.model_copy(update={"status": "new", "first_seen": None}))
        else:
            first = old.first_seen or earlier
            findings.append(finding.model_copy(update={"status": "open", "first_seen": first}))
    now = {f.fingerprint for f in report.findings}
    resolved = [
        f.model_copy(update={"status": None})
        for f in previous.findings
        if f.fingerprint not in now and _looked_again(report, f)
    ]
    return report.model_copy(
        update={"findings": findings, "resolved": resolved, "previous": earlier}
    )


def _looked_again(report: Report, finding: Finding) -> bool:
    agents = {a.name: a.status for a in report.agents}
    if agents.get(finding.agent) != "done":
        return False
    part = _PART.get(finding.source)
    if part is not None and any(
        p.startswith(f"{part} did not run") for p in report.coverage.not_run
    ):
        return False
    if finding.source is Source.llm and not (report.llm_calls or report.reuse.any):
        return False  # no model this time: its findings were not judged again
    if finding.file is None:
        return True
    reason = next((s.reason for s in report.coverage.files_skipped if s.file == finding.file), None)
    if reason is None:  # analyzed again, or no longer part of the change at all
        return True
    if reason.startswith("deleted"):  # the file, and the problem with it, is gone
        return True
    # Only the model skipped it: the analyzers' findings in it were looked at again.
    return "not reviewed by the model" in reason and finding.source is not Source.llm


def delta_line(report: Report) -> str:
    """ "N new, M still open, K resolved since <head>", or "" without a previous run."""
    if report.previous is None:
        return ""
    new = sum(1 for f in report.findings if f.status == "new")
    still = sum(1 for f in report.findings if f.status == "open")
    return (
        f"{new} new, {still} still open, {len(report.resolved)} resolved since "
        f"{report.previous.head_sha[:10]}"
    )


def with_votes(report: Report, counts: dict[str, tuple[int, int]]) -> Report:
    """`report` with each finding's votes from earlier runs (by fingerprint: up, down)."""
    findings = [
        f.model_copy(
            update={"votes": Votes(up=counts[f.fingerprint][0], down=counts[f.fingerprint][1])}
        )
        if f.fingerprint in counts
        else f
        for f in report.findings
    ]
    return report.model_copy(update={"findings": findings})
