"""Hardening reverted: a diff that removes a safe API and adds its unsafe counterpart.

That shape is how most vulnerabilities come back: a refactor that swaps `yaml.safe_load` for
`yaml.load`, `defusedxml` for the standard library, an argument list for a shell string. Each
rule needs both halves in one file of the diff: the safe call on a removed line, the unsafe one on
an added line; the finding is on the added line and names what was removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from agents.analyzers.merge import problem_fingerprint
from agents.context import files as kinds
from agents.context.git import DiffContext, FileDiff
from agents.report import Finding, Severity, Source


@dataclass(frozen=True)
class Reversal:
    problem: str  # the problem class (merge.py), shared with bandit's check for the same thing
    safe: re.Pattern[str]
    unsafe: re.Pattern[str]
    safe_name: str
    title: str
    suggestion: str
    # An added line that matches this keeps the protection (lxml with resolve_entities=False).
    kept: re.Pattern[str] | None = None
    # While the new file still matches this, the safe API is in use there: no reversal.
    still: re.Pattern[str] | None = None


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_PARAMETERISED = _re(
    r"\.execute(?:many)?\((?=[^\n]*(?:\?|%s|%\(\w+\)s|:\w+))[^\n]*?['\"]\s*+,\s*+[\[({\w]"
)
_BUILT_SQL = _re(
    r"\.execute(many|script)?\(\s*(f['\"]|['\"][^'\"]*['\"]\s*(%|\+|\.format\()|\w+\s*(%|\+)\s*|\w+\.format\()"
)

REVERSALS: tuple[Reversal, ...] = (
    Reversal(
        "unsafe-xml",
        _re(r"\bdefusedxml\b"),
        _re(
            r"\b(fromstring|fromstringlist|parse|iterparse|XML|XMLParser|parseString|make_parser)\s*\("
            r"|^\s*(from|import)\s+(xml\.(etree|dom|sax)|lxml)\b"
        ),
        "defusedxml",
        "XML parsing moved from defusedxml to a parser that expands entities",
        "Keep defusedxml (or lxml with resolve_entities=False, no_network=True).",
        kept=_re(r"resolve_entities\s*=\s*False"),
        still=_re(r"\bdefusedxml\b"),
    ),
    Reversal(
        "unsafe-yaml",
        _re(r"\b(safe_load(_all)?|SafeLoader|CSafeLoader)\b"),
        _re(
            r"\byaml\.(load|load_all|unsafe_load|full_load)\s*\(|Loader\s*=\s*(yaml\.)?(Loader|UnsafeLoader|FullLoader|CLoader)\b"
        ),
        "yaml.safe_load",
        "yaml.safe_load replaced by a loader that builds arbitrary objects",
        "Use yaml.safe_load, or yaml.load(data, Loader=yaml.SafeLoader).",
        kept=_re(r"SafeLoader|safe_load"),
    ),
    Reversal(
        "insecure-tempfile",
        _re(r"\b(mkstemp|mkdtemp|NamedTemporaryFile|TemporaryFile|TemporaryDirectory)\b"),
        _re(r"\bmktemp\s*\("),
        "tempfile.mkstemp",
        "A safe temporary file replaced by mktemp (a race between naming and opening)",
        "Use tempfile.mkstemp or NamedTemporaryFile, which create the file atomically.",
    ),
    Reversal(
        "shell-injection",
        _re(r"\b(subprocess\.\w+|check_output|check_call|Popen|run)\s*\(\s*\["),
        _re(r"shell\s*=\s*True|\bos\.(system|popen)\s*\(|\bcommands\.getoutput\s*\("),
        "an argument list",
        "A command given as an argument list now goes through a shell",
        "Pass an argument list with shell=False; never build a shell string from input.",
    ),
    Reversal(
        "sql-injection",
        _PARAMETERISED,
        _BUILT_SQL,
        "a parameterised query",
        "A parameterised query replaced by SQL built from strings",
        "Keep placeholders and pass the values as parameters.",
    ),
    Reversal(
        "eval",
        _re(r"\bliteral_eval\s*\("),
        _re(r"(?<![\w.])eval\s*\("),
        "ast.literal_eval",
        "ast.literal_eval replaced by eval (runs any expression)",
        "Use ast.literal_eval (or json) for data; never eval input.",
    ),
    Reversal(
        "tls-verification-off",
        _re(r"\bverify\s*=\s*(?!False\b)[\w.\"']+|\bcheck_hostname\s*=\s*True|CERT_REQUIRED"),
        _re(r"\bverify\s*=\s*False\b|\bcheck_hostname\s*=\s*False\b|CERT_NONE\b"),
        "TLS verification",
        "TLS certificate verification turned off",
        "Keep verification on; pass a CA bundle (verify='/path/ca.pem') for private CAs.",
    ),
    Reversal(
        "insecure-random",
        _re(r"\bsecrets\.\w+|\bSystemRandom\b|\bos\.urandom\b"),
        _re(r"\brandom\.(random|randint|randrange|choice|choices|getrandbits|sample|shuffle)\s*\("),
        "the secrets module",
        "A cryptographic random source replaced by the random module (predictable)",
        "Use secrets.token_hex / token_urlsafe / choice for tokens, keys and passwords.",
    ),
    Reversal(
        "template-autoescape-off",
        _re(r"\bautoescape\s*=\s*(True|select_autoescape)|\bselect_autoescape\s*\("),
        _re(r"\bautoescape\s*=\s*False\b"),
        "autoescaping",
        "Template autoescaping turned off (cross-site scripting)",
        "Keep autoescape=True (or select_autoescape()); mark trusted markup explicitly.",
    ),
    Reversal(
        "timing-unsafe-compare",
        _re(r"compare_digest|constant_time_compare|const_compare|safe_str_cmp|secure_compare"),
        _re(
            r"(?i)\b(?:\w+_)?(?:digest|signature|sig|token|hmac|mac|hash|secret|password)"
            r"(?:_\w+)?\s*(?:==|!=)|(?:==|!=)\s*(?:\w+_)?(?:digest|signature|sig|token|hmac"
            r"|mac|hash|secret|password)(?:_\w+)?\b"
        ),
        "hmac.compare_digest",
        "A constant-time comparison replaced by == (leaks the secret through timing)",
        "Compare secrets, signatures and tokens with hmac.compare_digest.",
    ),
)


_LONG_LINE = 1000


def _code_lines(file: FileDiff) -> tuple[list[str], dict[int, str]]:
    """Removed and added lines, without comments (a comment about yaml.load is no call)."""

    def code(text: str) -> str:
        stripped = text.lstrip()
        return "" if stripped.startswith(("#", "//")) else text

    # Past this length a line is data, not a call; and regexes stay linear on it.
    removed = [code(line) for line in file.removed_lines if len(line) <= _LONG_LINE]
    added = {n: code(text) for n, text in file.added_lines.items() if len(text) <= _LONG_LINE}
    return removed, added


_SWITCH = re.compile(r"^\s*(if|elif|else)\b.*(verif|insecure|check_?hostname|validate|cert)", re.I)


def _under_opt_out(text: str, number: int) -> bool:
    """The line sits under an `if verify is False:`-style switch: the caller's own opt-out."""
    lines = text.splitlines()
    indent = len(lines[number - 1]) - len(lines[number - 1].lstrip()) if number <= len(lines) else 0
    for previous in reversed(lines[max(0, number - 6) : number - 1]):
        if previous.strip() and len(previous) - len(previous.lstrip()) < indent:
            return bool(_SWITCH.match(previous))
    return False


def run_hardening(
    diff: DiffContext, *, agent: str, texts: Mapping[str, str] | None = None
) -> list[Finding]:
    findings: list[Finding] = []
    for file in diff.files:
        if file.status == "deleted" or not file.added_lines or not file.removed_lines:
            continue
        if not kinds.is_python(file.path) or kinds.illustrative_kind(file.path) is not None:
            continue
        removed, added = _code_lines(file)
        for rule in REVERSALS:
            if not any(rule.safe.search(line) for line in removed):
                continue
            # The unsafe form was there before too: a refactor, not a reversal.
            if any(rule.unsafe.search(line) and not rule.safe.search(line) for line in removed):
                continue
            for number, text in sorted(added.items()):
                if not rule.unsafe.search(text) or rule.safe.search(text):
                    continue
                if rule.kept is not None and rule.kept.search(text):
                    continue
                whole = (texts or {}).get(file.path)
                if (
                    rule.problem == "tls-verification-off"
                    and whole
                    and _under_opt_out(whole, number)
                ):
                    continue
                if rule.still is not None and whole is not None and rule.still.search(whole):
                    break
                findings.append(_finding(file.path, number, text, rule, agent))
                break  # one finding per rule and file: the first line that brings it back
    return findings


def _finding(path: str, number: int, text: str, rule: Reversal, agent: str) -> Finding:
    return Finding(
        fingerprint=problem_fingerprint(rule.problem, path, text),
        agent=agent,
        category="security",
        rule=f"problem:{rule.problem}:reverted",
        severity=Severity.high,
        confidence=0.8,
        file=path,
        start_line=number,
        end_line=number,
        title=rule.title,
        detail=f"The branch removes {rule.safe_name} from {path} and adds, on line {number}, "
        "its unsafe counterpart: the protection is gone.",
        suggestion=rule.suggestion,
        source=Source.heuristic,
    )
