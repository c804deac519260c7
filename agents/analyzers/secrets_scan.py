"""detect-secrets over the lines a branch added, in every text file of any language.

The secret itself never leaves this module: findings carry its kind, a masked preview and a hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

from agents.analyzers.credentials import demotion
from agents.analyzers.merge import CREDENTIAL, problem_fingerprint
from agents.analyzers.processes import own_session, spread_over
from agents.analyzers.secrets_lines import Hit, scan_diffs
from agents.context import files as kinds
from agents.context.git import DiffContext, FileDiff
from agents.report import Finding, Severity, Source
from agents.reuse import (
    PROCESS_ANSWERS,
    AnswerStore,
    code_version,
    key_of,
    recall_many,
    remember_many,
)

# Kinds that identify a real credential format with almost no false positives.
_CRITICAL_KINDS = frozenset(
    {
        "AWS Access Key",
        "Artifactory Credentials",
        "Azure Storage Account access key",
        "Cloudant Credentials",
        "Discord Bot Token",
        "GitHub Token",
        "GitLab Token",
        "IBM Cloud IAM Key",
        "IBM COS HMAC Credentials",
        "Mailchimp Access Key",
        "NPM tokens",
        "OpenAI Token",
        "Private Key",
        "PyPI Token",
        "SendGrid API Key",
        "Slack Token",
        "SoftLayer Credentials",
        "Square OAuth Secret",
        "Stripe Access Key",
        "Telegram Bot Token",
        "Twilio API Key",
    }
)
_GUESSES = {
    "Secret Keyword": (Severity.high, 0.6),
    "Basic Auth Credentials": (Severity.high, 0.8),
    "JSON Web Token": (Severity.high, 0.7),
    "Base64 High Entropy String": (Severity.medium, 0.4),
    "Hex High Entropy String": (Severity.medium, 0.4),
    "Public IP (ipv4)": (Severity.low, 0.3),
}
log = logging.getLogger(__name__)


def mask(secret: str) -> str:
    """Enough to recognise the value, never enough to use it."""
    if len(secret) < 12:
        return f"{'*' * 8} ({len(secret)} characters)"
    return f"{secret[:4]}{'*' * 8} ({len(secret)} characters)"


_TOKEN_REST = r"[^\s\"'`,;)]*"


def whole_token(value: str, line: str) -> str:
    """Some detectors report only a token's prefix (GitHub's `ghp`); take the whole token from
    the line, so masking and de-duplication see the real value."""
    if not value:
        return value
    match = re.search(re.escape(value) + _TOKEN_REST, line)
    return match.group(0) if match else value


def _synthetic_diff(name: str, file: FileDiff) -> str:
    """One file's hunks under a plain name: unidiff cannot parse every real path git prints
    (spaces, quotes), and the name only needs to keep the extension detect-secrets looks at."""
    out = [f"diff --git a/{name} b/{name}", f"--- a/{name}", f"+++ b/{name}"]
    for hunk in file.hunks:
        out.append(f"@@ -{hunk.old_start},{hunk.old_count} +{hunk.new_start},{hunk.new_count} @@")
        out += [f"{tag}{text}" for tag, text in hunk.lines]
    return "\n".join(out) + "\n"


# A branch adding this many lines is scanned by several processes, one per core: detect-secrets
# is pure Python, so in one process it holds one core however many the machine has. Below it,
# a process's start (about 0.15 s) costs more than it saves: the scan takes about 25 us a line
# (`secrets_lines`), so 20,000 lines are half a second of one core.
PARALLEL_FROM_LINES = 20_000

WORKER = "agents.analyzers.secrets_worker"  # the module a share runs in


def _scan_in_processes(diffs: list[tuple[str, str]], processes: int) -> tuple[list[Hit], list[int]]:
    """The same scan, the files dealt out to `processes` worker processes by size. A worker
    that fails is scanned here instead, so a failure costs time, never findings."""
    order = sorted(range(len(diffs)), key=lambda i: -len(diffs[i][1]))
    shares: list[list[int]] = [[] for _ in range(processes)]
    sizes = [0] * processes
    for index in order:  # the largest first, each to the lightest share
        lightest = sizes.index(min(sizes))
        shares[lightest].append(index)
        sizes[lightest] += len(diffs[index][1])

    def scan(share: list[int]) -> tuple[list[Hit], list[int]]:
        payload = json.dumps([[i, *diffs[i]] for i in share])
        try:
            done = subprocess.run(
                [sys.executable, "-m", WORKER],
                input=payload.encode("utf-8"),
                capture_output=True,
                check=False,
                start_new_session=own_session(),
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode("utf-8", "replace")[-500:])
            answer = json.loads(done.stdout)
            found = [(int(i), str(k), int(n), str(v)) for i, k, n, v in answer["hits"]]
            return found, [int(i) for i in answer["failed"]]
        except Exception as exc:
            log.warning("a secrets scan process failed (%s); scanning its files here", exc)
            hits: list[Hit] = []
            failed: list[int] = []
            for i in share:
                found, lost = scan_diffs([diffs[i]], first=i)
                hits += found
                failed += lost
            return hits, failed

    with ThreadPoolExecutor(max_workers=processes) as pool:
        results = list(pool.map(scan, [share for share in shares if share]))
    hits = sorted((hit for found, _ in results for hit in found), key=lambda h: (h[0], h[2], h[1]))
    return hits, sorted(i for _, lost in results for i in lost)


def _kept_form(hits: list[Hit], file: FileDiff) -> str | None:
    """A file's hits as kept, without the secrets themselves: each value as where it is in its
    line (a store must never hold a credential). None when a value is not found in its line:
    that answer is not kept."""
    places: list[list[object]] = []
    for _, kind, number, value in hits:
        start = file.added_lines.get(number, "").find(value) if value else -1
        if start < 0:
            return None
        places.append([kind, number, start, start + len(value)])
    return json.dumps(places)


def _recalled(stored: str, index: int, file: FileDiff) -> list[Hit]:
    hits: list[Hit] = []
    for kind, number, start, end in json.loads(stored):
        hits.append(
            (index, str(kind), int(number), file.added_lines.get(int(number), "")[start:end])
        )
    return hits


def redact(finding: Finding, values: set[str]) -> Finding:
    """The finding with every known secret value masked in its words: another tool's message
    (ruff quoting a duplicate set item, bandit quoting a password) must not show one."""
    fields = {"title": finding.title, "detail": finding.detail, "suggestion": finding.suggestion}
    changed = {}
    for name, text in fields.items():
        new = text
        for value in values:
            if len(value) >= 4 and value in new:
                new = new.replace(value, mask(value))
        if new != text:
            changed[name] = new
    return finding.model_copy(update=changed) if changed else finding


def run_secrets(
    diff: DiffContext,
    *,
    agent: str,
    texts: Mapping[str, str] | None = None,
    values: set[str] | None = None,
    kept: AnswerStore = PROCESS_ANSWERS,
    failed: list[str] | None = None,
) -> list[Finding]:
    """Findings for credential-looking values on added lines. `texts` (the head's content of
    the analyzed files) lets a value in a comment or docstring be told from one in code. Each
    file's answer is kept in `kept` by its added lines: only files with new ones are scanned.
    The files whose scan failed are appended to `failed` (never kept: a failure is not "no
    secrets"), so the report can say they were not checked."""
    files = [f for f in diff.files if f.hunks and f.status != "deleted" and not f.binary]
    if not files:
        return []
    hits: list[Hit] = []
    names: list[str] = []
    keys: list[str] = []
    for index, file in enumerate(files):
        suffix = re.sub(r"[^A-Za-z0-9.]", "", PurePosixPath(file.path).suffix)[:10]
        lock = kinds.is_lock_file(file.path)
        names.append(f"f{index}{suffix}" if not lock else PurePosixPath(file.path).name)
        # The name only tells detect-secrets the file's kind: the key leaves out its number.
        keys.append(
            key_of(
                "secrets",
                code_version(),
                _synthetic_diff(names[-1] if lock else f"f{suffix}", file),
            )
        )
    known = recall_many(kept, keys)
    todo: list[tuple[int, str, tuple[str, str]]] = []  # index, key, (name, diff)
    for index, (file, name, key) in enumerate(zip(files, names, keys, strict=True)):
        stored = known.get(key)
        if stored is None:
            todo.append((index, key, (name, _synthetic_diff(name, file))))
        else:
            hits += _recalled(stored, index, file)
    if todo:
        diffs = [item for _, _, item in todo]
        added = sum(len(files[i].added_lines) for i, _, _ in todo)
        if added >= PARALLEL_FROM_LINES and len(diffs) > 1 and spread_over() > 1:
            found, lost = _scan_in_processes(diffs, spread_over())
        else:
            found, lost = scan_diffs(diffs)
        if failed is not None:
            failed += [files[todo[j][0]].path for j in lost]
        by_todo: dict[int, list[Hit]] = {}  # the scan numbers the files of `todo` only
        for j, k, n, v in found:
            by_todo.setdefault(j, []).append((todo[j][0], k, n, v))
        answers: list[tuple[str, str, str]] = []
        for local, (index, key, _) in enumerate(todo):
            mine = by_todo.get(local, [])
            form = _kept_form(mine, files[index])
            if form is not None and local not in lost:
                answers.append((key, "secrets", form))
            hits += mine
        remember_many(kept, answers)
    hits.sort(key=lambda h: (h[0], h[2], h[1]))
    findings: list[Finding] = []
    for index, kind, number, secret_value in hits:
        file = files[index]
        path = file.path
        line = file.added_lines.get(number, "")
        value = whole_token(secret_value, line)
        if values is not None and value:
            values.add(value)
        detail = f"The line adds a value that looks like a secret ({kind}): {mask(value)}."
        if kind in _CRITICAL_KINDS:
            # A real key format is live wherever it is, a test or a comment included.
            severity, confidence = Severity.critical, 0.9
        else:
            severity, confidence = _GUESSES.get(kind, (Severity.medium, 0.5))
            demoted = demotion(path, number, value, line, (texts or {}).get(path))
            if demoted is not None and demoted.severity.rank < severity.rank:
                severity = demoted.severity
                detail += f" Rated {severity.value}: {demoted.reason}."
        # One identity per credential line, whichever analyzer saw it (merge.py).
        anchor = line or hashlib.sha1(value.encode("utf-8")).hexdigest()  # noqa: S324
        findings.append(
            Finding(
                fingerprint=problem_fingerprint(CREDENTIAL, path, anchor),
                agent=agent,
                category="secret",
                rule=kind,
                severity=severity,
                confidence=confidence,
                file=path,
                start_line=number,
                end_line=number,
                title=f"Possible {kind} added",
                detail=detail,
                suggestion=(
                    "Remove it from the branch (rewrite the commits that added it), rotate the "
                    "credential, and read it from the environment or a secret store."
                ),
                source=Source.secrets,
            )
        )
    return findings
