"""bandit: security findings on the lines a branch changed.

bandit runs in its own processes (one per core on a large change), beside the secrets scan. Its
answer on a file depends only on that file, so each file's answer is kept by its content (in
the store when there is one, else in this process): a re-run, or a push, reads only the files
whose content is new.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agents.analyzers.credentials import demotion
from agents.analyzers.merge import CREDENTIAL, problem_fingerprint
from agents.analyzers.processes import own_session, spread_over
from agents.analyzers.secrets_scan import mask
from agents.context import files as kinds
from agents.context.workspace import Workspace
from agents.report import Finding, Severity, Source, fingerprint
from agents.reuse import (
    PROCESS_ANSWERS,
    AnswerStore,
    code_version,
    key_of,
    recall_many,
    remember_many,
)

# Checks that are mostly noise in review: `assert` use and "this module can be misused" warnings
# on imports (subprocess, pickle, xml ...); their real misuse is caught by the call checks.
BANDIT_SKIP = ("B101", *(f"B4{n:02d}" for n in range(1, 16)))

_SEVERITY = {"HIGH": Severity.high, "MEDIUM": Severity.medium, "LOW": Severity.low}
_CONFIDENCE = {"HIGH": 0.9, "MEDIUM": 0.6, "LOW": 0.3}
# Injection-shaped checks rate higher than bandit's default, since input reaching them means
# code execution or data theft: eval/exec, SQL from strings, shells.
_SEVERITY_OVERRIDE = {
    "B102": Severity.high,
    "B307": Severity.high,
    "B608": Severity.high,
    "B602": Severity.high,
    "B605": Severity.high,
    # Deserializing with these runs code the data chooses: remote code execution when the data
    # comes from outside (yaml.load without a safe loader, pickle/shelve/jsonpickle, marshal).
    "B301": Severity.high,
    "B302": Severity.high,
    "B506": Severity.high,
}
_CREDENTIAL_CHECKS = ("B105", "B106", "B107")
_AT_MOST_MEDIUM = frozenset({"B324"})
# A value read from the environment or a settings object is the right way to do it.
_FROM_OUTSIDE = re.compile(r"\b(environ|getenv|get_secret|secrets?manager|config\(|settings\.)")


def run_bandit(
    workspace: Workspace,
    *,
    agent: str,
    unread: list[str] | None = None,
    values: set[str] | None = None,
    kept: AnswerStore = PROCESS_ANSWERS,
) -> list[Finding]:
    """bandit's findings on changed lines. The files bandit could not read (a syntax error,
    Python 2) are appended to `unread`, so the report can say what it did not check. Each
    file's answer is kept in `kept` by its content: only files not seen before are read."""
    files = {f.path: f for f in workspace.python_files()}
    if not files:
        return []
    data = answers_for(workspace, kept)
    if unread is not None:
        unread += sorted(
            str(e.get("filename", "")).removeprefix("./") for e in data.get("errors", [])
        )
    findings: list[Finding] = []
    for item in data.get("results", []):
        path = str(item["filename"]).removeprefix("./")
        diff = files.get(path)
        if diff is None:
            continue
        finding = _finding(item, path, diff.added_lines, workspace.texts.get(path, ""), agent)
        if values is not None and str(item["test_id"]) in _CREDENTIAL_CHECKS:
            values.add(_quoted_value(str(item.get("issue_text", ""))))
        if finding is None:
            continue
        # Placed on bandit's own line (not the first line of a multi-line statement). A
        # credential is about that one line: a change elsewhere in its dict is not a new one.
        number = int(item["line_number"])
        lines = [int(n) for n in item.get("line_range") or [number]]
        if finding.rule in _CREDENTIAL_CHECKS:
            relevant = diff.changed_in(number, number)
        else:
            relevant = diff.changed_in(min(lines), max(lines))
        if relevant:
            findings.append(finding)
    return findings


def answers_for(workspace: Workspace, kept: AnswerStore) -> dict[str, Any]:
    """bandit's JSON answer for the workspace's Python files: each file's part from `kept`
    when the same content (and bandit, and its settings) was read before, the rest from bandit,
    kept for next time. A failure is never kept."""
    paths = _scanned(workspace)
    keys = {path: _file_key(path, workspace.texts[path]) for path in paths}
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    missing: list[str] = []
    known = recall_many(kept, list(keys.values()))
    for path in paths:
        stored = known.get(keys[path])
        if stored is None:
            missing.append(path)
            continue
        part = json.loads(stored)
        text = workspace.texts[path]
        results += [{**_restored(item, text), "filename": path} for item in part["results"]]
        errors += [{**item, "filename": path} for item in part["errors"]]
    if missing:
        data = _run(workspace, missing)
        answers: list[tuple[str, str, str]] = []
        for path in missing:
            mine = [r for r in data["results"] if _name(r) == path]
            wrong = [e for e in data["errors"] if _name(e) == path]
            stripped = [_without_secret(item, workspace.texts[path]) for item in mine]
            if all(item is not None for item in stripped):
                part = {"results": stripped, "errors": wrong}
                answers.append((keys[path], "bandit", json.dumps(part)))
            results += [{**item, "filename": path} for item in mine]
            errors += [{**item, "filename": path} for item in wrong]
        remember_many(kept, answers)
    return {"results": results, "errors": errors}


# A kept answer never holds a credential: bandit's `code` (the lines themselves) is left out,
# and the value a hard-coded-password check quotes is kept as where it is in the file, put back
# from the file's own text when the answer is used (the key is that text).
_VALUE_AT = "value_at"


def _without_secret(item: dict[str, Any], text: str) -> dict[str, Any] | None:
    """bandit's result as kept; None when its quoted value is not found in the file (then
    the file's answer is not kept at all)."""
    kept = {k: v for k, v in item.items() if k != "code"}
    if str(item.get("test_id")) not in _CREDENTIAL_CHECKS:
        return kept
    issue = str(item.get("issue_text", ""))
    value = _quoted_value(issue)
    if not value:
        return kept
    start = text.find(value)
    if start < 0:
        return None
    kept["issue_text"] = issue.replace(value, "")
    kept[_VALUE_AT] = [start, start + len(value)]
    return kept


def _restored(item: dict[str, Any], text: str) -> dict[str, Any]:
    """A kept result as bandit gave it (but its `code`), its quoted value read back from the
    file's text."""
    place = item.get(_VALUE_AT)
    if place is None:
        return item
    start, end = int(place[0]), int(place[1])
    issue = str(item["issue_text"])
    head, sep, _ = issue.partition(": '")
    restored = f"{head}{sep}{text[start:end]}'" if sep else issue
    return {**{k: v for k, v in item.items() if k != _VALUE_AT}, "issue_text": restored}


def _scanned(workspace: Workspace) -> list[str]:
    """What `--recursive .` picks: bandit reads only these, whatever else is in the folder."""
    return sorted(p for p in workspace.texts if p.endswith((".py", ".pyw")))


def _name(item: dict[str, Any]) -> str:
    return str(item.get("filename", "")).removeprefix("./")


def _file_key(path: str, text: str) -> str:
    """What bandit's answer on one file depends on: its version and this code's (in
    `code_version`), its settings, the file's text and kind (its extension), never its name or
    its neighbours."""
    kind = path.rsplit(".", 1)[-1]
    return key_of("bandit", code_version(), ",".join(BANDIT_SKIP), kind, text)


def _run(workspace: Workspace, paths: list[str]) -> dict[str, Any]:
    """bandit's JSON answer on `paths`. A large share is dealt out by size to several bandit
    processes, one per core (bandit is pure Python), and their answers joined."""
    sizes = {path: len(workspace.texts[path]) for path in paths}
    processes = spread_over() if sum(sizes.values()) >= PARALLEL_FROM_BYTES else 1
    if processes == 1 or len(paths) < 2:
        return _bandit(workspace, paths)
    shares: list[list[str]] = [[] for _ in range(processes)]
    loads = [0] * processes
    for path in sorted(paths, key=lambda p: -sizes[p]):  # the largest first, to the lightest
        lightest = loads.index(min(loads))
        shares[lightest].append(path)
        loads[lightest] += sizes[path]
    with ThreadPoolExecutor(max_workers=processes) as pool:
        answers = list(pool.map(lambda share: _bandit(workspace, share), shares))
    return {
        "results": [r for answer in answers for r in answer.get("results", [])],
        "errors": [e for answer in answers for e in answer.get("errors", [])],
    }


def _bandit(workspace: Workspace, targets: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chatops-bandit-") as scratch:
        out = Path(scratch) / "bandit.json"
        # Without `--ini`, bandit takes its settings from a `.bandit` file under the target: a
        # branch could choose what is checked on its own change (or stop bandit with two).
        settings = Path(scratch) / "settings.ini"
        settings.write_text("[bandit]\n", "utf-8")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bandit",
                "--quiet",
                "--format=json",
                f"--output={out}",
                f"--ini={settings}",
                f"--skip={','.join(BANDIT_SKIP)}",
                # bandit's default excludes match by substring (".git" in ".github/..."),
                # which would skip changed files silently.
                "--exclude=",
                "--recursive",
                "--",
                *targets,
            ],
            cwd=workspace.root,
            capture_output=True,
            check=False,
            # In the shell, a session of its own: the prompt's Ctrl-C must not fail the run.
            start_new_session=own_session(),
        )
        # bandit exits 1 when it found something; anything else without a report is a failure.
        if done.returncode not in (0, 1) or not out.exists():
            raise RuntimeError(f"bandit failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        data: dict[str, Any] = json.loads(out.read_text("utf-8"))
    return data


# Source this large (bytes) is worth a second bandit process: below it, a process's start costs
# more than it saves.
PARALLEL_FROM_BYTES = 400_000


def _finding(
    item: dict[str, Any], path: str, added: dict[int, str], text: str, agent: str
) -> Finding | None:
    test_id = str(item["test_id"])
    number = int(item["line_number"])
    line_text = added.get(number) or _line(text, number)
    severity = _SEVERITY.get(item["issue_severity"], Severity.low)
    # bandit rates a shell started with a constant command LOW ("seems safe"): keep its word.
    if test_id in _SEVERITY_OVERRIDE and item["issue_severity"] != "LOW":
        severity = _SEVERITY_OVERRIDE[test_id]
    cwe = item.get("issue_cwe") or {}
    detail = (f"CWE-{cwe['id']}. " if cwe.get("id") else "") + (
        f"bandit {test_id}, confidence {str(item['issue_confidence']).lower()}."
    )
    anchor = fingerprint(source=Source.bandit, rule=test_id, file=path, anchor=line_text)
    title = f"{test_id} {item.get('test_name', '')}: {item['issue_text']}".strip()
    if test_id in _CREDENTIAL_CHECKS:
        # bandit's message is "Possible hardcoded password: '<value>'", the value verbatim
        # (quotes and newlines included).
        value = _quoted_value(str(item.get("issue_text", "")))
        # An empty string, None or a value read from the environment is no hard-coded secret.
        if not value.strip() or _FROM_OUTSIDE.search(line_text):
            return None
        severity = Severity.high
        demoted = demotion(path, number, value, line_text, text)
        if demoted is not None:
            severity = demoted.severity
            detail += f" Rated {severity.value}: {demoted.reason}."
        anchor = problem_fingerprint(CREDENTIAL, path, line_text)
        # bandit quotes the password in its message; the report never shows a secret.
        title = f"{test_id} {item.get('test_name', '')}: Possible hardcoded password: {mask(value)}"
    elif kinds.is_test_path(path):
        # Test code has no attack surface: a request without a timeout, a temp path, a
        # subprocess or try/except/pass there is how tests are written. Credentials (above)
        # are still reported, demoted.
        return None
    elif kinds.illustrative_kind(path) is not None and severity.rank > Severity.low.rank:
        # In a test, a subprocess, a temp file or a weak hash is usually the point of the test.
        severity = Severity.low
        detail += f" Rated low: in {kinds.illustrative_kind(path)}."
    if (
        str(item.get("issue_confidence")) == "LOW" or test_id in _AT_MOST_MEDIUM
    ) and severity.rank > Severity.medium.rank:
        # bandit's own low confidence (SQL-looking text built far from any execute(), say in
        # a query compiler), or a weak hash that is as often a cache key: worth a look, not high.
        severity = Severity.medium
        detail += " Rated medium: bandit is not confident this is exploitable."
    return Finding(
        fingerprint=anchor,
        agent=agent,
        category="security",
        rule=test_id,
        severity=severity,
        confidence=_CONFIDENCE.get(item["issue_confidence"], 0.3),
        file=path,
        start_line=number,
        end_line=number,
        title=title,
        detail=detail,
        suggestion=_SUGGESTIONS.get(test_id, ""),
        source=Source.bandit,
    )


def _quoted_value(text: str) -> str:
    """bandit's "Possible hardcoded password: '<value>'": the value verbatim (quotes and
    newlines included)."""
    return text.split(": '", 1)[1].removesuffix("'") if ": '" in text else ""


def _line(text: str, number: int) -> str:
    lines = text.split("\n")  # git counts "\n" only
    return lines[number - 1] if 0 < number <= len(lines) else ""


_SUGGESTIONS = {
    "B307": "Use ast.literal_eval for data, or avoid evaluating input at all.",
    "B102": "Avoid exec; dispatch to known functions instead.",
    "B608": "Use parameterized queries (placeholders and parameters), never string building.",
    "B602": "Pass an argument list and shell=False; never let input reach a shell.",
    "B605": "Use subprocess with an argument list instead of os.system.",
    "B506": "Use yaml.safe_load, or yaml.load(..., Loader=yaml.SafeLoader).",
    "B301": "Never unpickle untrusted data; use JSON.",
    "B105": "Read secrets from the environment or a secret store.",
    "B106": "Read secrets from the environment or a secret store.",
    "B324": "Use hashlib.sha256, or pass usedforsecurity=False when not for security.",
    "B501": "Keep TLS certificate verification on.",
}
