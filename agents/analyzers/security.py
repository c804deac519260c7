"""bandit: security findings on the lines a branch changed.

bandit runs in its own process, so it uses the second core while secrets are scanned in this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agents.context.workspace import Workspace
from agents.report import Finding, Severity, Source, fingerprint

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
}


def run_bandit(workspace: Workspace, *, agent: str) -> list[Finding]:
    files = {f.path: f for f in workspace.python_files()}
    if not files:
        return []
    with tempfile.TemporaryDirectory(prefix="chatops-bandit-") as scratch:
        out = Path(scratch) / "bandit.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bandit",
                "--quiet",
                "--format=json",
                f"--output={out}",
                f"--skip={','.join(BANDIT_SKIP)}",
                # bandit's default excludes match by substring (".git" in ".github/..."),
                # which would skip changed files silently.
                "--exclude=",
                "--recursive",
                ".",
            ],
            cwd=workspace.root,
            capture_output=True,
            check=False,
        )
        # bandit exits 1 when it found something; anything else without a report is a failure.
        if done.returncode not in (0, 1) or not out.exists():
            raise RuntimeError(f"bandit failed: {done.stderr.decode('utf-8', 'replace').strip()}")
        data: dict[str, Any] = json.loads(out.read_text("utf-8"))
    findings: list[Finding] = []
    for item in data.get("results", []):
        path = str(item["filename"]).removeprefix("./")
        diff = files.get(path)
        if diff is None:
            continue
        lines = [int(n) for n in item.get("line_range") or [item["line_number"]]]
        start, end = min(lines), max(lines)
        if not diff.changed_in(start, end):
            continue
        test_id = str(item["test_id"])
        severity = _SEVERITY_OVERRIDE.get(
            test_id, _SEVERITY.get(item["issue_severity"], Severity.low)
        )
        line_text = diff.added_lines.get(int(item["line_number"]), "")
        cwe = item.get("issue_cwe") or {}
        findings.append(
            Finding(
                fingerprint=fingerprint(
                    source=Source.bandit, rule=test_id, file=path, anchor=line_text
                ),
                agent=agent,
                category="security",
                rule=test_id,
                severity=severity,
                confidence=_CONFIDENCE.get(item["issue_confidence"], 0.3),
                file=path,
                start_line=start,
                end_line=end,
                title=f"{test_id} {item.get('test_name', '')}: {item['issue_text']}".strip(),
                detail=(f"CWE-{cwe['id']}. " if cwe.get("id") else "")
                + f"bandit {test_id}, confidence {str(item['issue_confidence']).lower()}.",
                suggestion=_SUGGESTIONS.get(test_id, ""),
                source=Source.bandit,
            )
        )
    return findings


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
