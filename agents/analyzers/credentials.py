"""Whether a credential-looking value is a credential: judged from where it is (a test, the docs,
an example, a comment or docstring) and what it looks like (a placeholder, a demo pair, a local
or example host, a short development default).

detect-secrets and bandit ask the same question of the same lines, so both use this one answer;
`merge.py` then makes one finding of what they both saw. A real key format (AWS, a private key
block, a Slack or GitHub token) is never demoted: such a value is live wherever it is.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

from agents.context import files as kinds
from agents.report import Severity

# Values people write where a real one would go; compared case-insensitively, without
# punctuation. Includes the classic demo pairs (scott/tiger, hunter2).
_PLACEHOLDERS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "secretkey",
        "mysecret",
        "topsecret",
        "changeme",
        "changeit",
        "token",
        "apikey",
        "key",
        "test",
        "testing",
        "tests",
        "testpass",
        "testpassword",
        "dummy",
        "fake",
        "sample",
        "example",
        "foo",
        "bar",
        "baz",
        "foobar",
        "qux",
        "spam",
        "eggs",
        "tiger",
        "scott",
        "hunter2",
        "letmein",
        "admin",
        "root",
        "user",
        "username",
        "guest",
        "default",
        "dev",
        "development",
        "local",
        "insecure",
        "notsecret",
        "notasecret",
        "xxx",
        "abc",
        "abc123",
        "123",
        "1234",
        "12345",
        "123456",
        "qwerty",
        "s3cr3t",
        "p4ssw0rd",
        "passw0rd",
        "none",
        "null",
        "empty",
        "redacted",
        "hidden",
        "mask",
        "masked",
        "placeholder",
        "yourpassword",
        "yoursecret",
        "yourtoken",
        "mypassword",
        "mytoken",
    }
)
# Whole-value template forms: `${DB_PASS}`, `{{ secret }}`, `<password>`, `%(pw)s`, `%PW%`,
# `...`, `****`, `xxxx`, one character repeated. A `$` or `%` inside a value proves nothing.
_TEMPLATED = re.compile(
    r"^(\$\{?[\w.-]+\}?|\{\{.*\}\}|\{[\w.-]*\}|<[^<>]+>|%\(\w+\)s|%[\w-]+%|\.\.\.+|\*+|x+|(.)\2+)$",
    re.IGNORECASE,
)
# user:password@host; the password runs to the authority's last `@`, as urllib splits it.
_URL_CREDENTIALS = re.compile(
    r"://(?P<user>[^:/\s@'\"]{0,200}):(?P<password>[^\s/'\"]{0,400})@(?P<host>[^/\s:'\"?#@]{0,255})"
)
_LOCAL_HOST = re.compile(
    r"^(localhost|127\.\d+\.\d+\.\d+|0\.0\.0\.0|\[?::1\]?|host|hostname|server|db|database"
    r"|postgres|mysql|redis|rabbitmq|mongo|example|your[-_.]?\w*"
    r"|([\w-]+\.)*(example|localhost|test|invalid|local|internal|lan))$"
    r"|^([\w-]+\.)*example\.(com|org|net)$",
    re.IGNORECASE,
)
# Demo accounts whose password is a placeholder even with a suffix (`scott:tiger^5HHH`).
_DEMO_USERS = frozenset({"scott", "user", "username", "test", "testuser", "demo", "example", "foo"})
_DEMO_PASSWORDS = ("tiger", "password", "pass", "secret", "test", "changeme", "demo", "example")
# A word in a value that says it is not for production (`django-insecure-...`, `dev-key-1`).
_DEV_WORDS = frozenset(
    {
        "insecure",
        "dev",
        "development",
        "changeme",
        "dummy",
        "fake",
        "example",
        "sample",
        "test",
        "testing",
        "local",
        "localdev",
        "notsecret",
        "placeholder",
        "unsafe",
        "debug",
    }
)
SHORT_VALUE = 8
# Shannon entropy (bits per character) below which a value reads like words, not a key.
LOW_ENTROPY = 3.0


@dataclass(frozen=True)
class Demotion:
    severity: Severity
    reason: str


def _plain(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def is_placeholder(value: str) -> bool:
    value = value.strip().strip("'\"`")
    if not value:
        return True
    if _TEMPLATED.search(value):
        return True
    plain = _plain(value)
    if not plain or plain in _PLACEHOLDERS:
        return True
    # "test-password", "dummy_secret_key", "my-dev-token": every word is a placeholder word.
    words = [w for w in re.split(r"[^a-z0-9]+", value.lower()) if w]
    return bool(words) and all(w in _PLACEHOLDERS for w in words)


def entropy(value: str) -> float:
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def value_demotion(value: str, line: str) -> Demotion | None:
    """What the value itself says: a placeholder, a demo account, a local host, a short
    development default."""
    match = _URL_CREDENTIALS.search(line)
    if match:
        user, password, host = match.group("user"), match.group("password"), match.group("host")
        demo_pair = user.lower() in _DEMO_USERS and any(
            password.lower().startswith(word) for word in _DEMO_PASSWORDS
        )
        # The reasons name no part of the URL: a user name or host can be half a secret.
        if is_placeholder(password) or password == user or demo_pair:
            return Demotion(Severity.info, "placeholder credentials in a URL")
        # A single-label host (`db`, `mssql2022`) is a compose service or a local name.
        if _LOCAL_HOST.match(host) or (host and "." not in host):
            return Demotion(Severity.low, "credentials for a local or example host")
    if not value:
        return None
    if is_placeholder(value):
        return Demotion(Severity.info, "a placeholder value, not a credential")
    words = set(re.split(r"[^a-z0-9]+", value.lower()))
    if words & _DEV_WORDS:
        # Name the marker word only: the value itself never leaves the analyzer.
        marker = sorted(words & _DEV_WORDS)[0]
        return Demotion(Severity.low, f"marked as a development default ('{marker}')")
    if len(value) < SHORT_VALUE:
        return Demotion(
            Severity.low, f"a short value ({len(value)} characters): a development default"
        )
    if entropy(value) < LOW_ENTROPY and value.replace("-", "").replace("_", "").isalpha():
        return Demotion(Severity.low, "a low-entropy word, not a generated secret")
    return None


def place_demotion(path: str, line_number: int, text: str | None) -> Demotion | None:
    """What the place says: a test, the docs, an example or fixture, a comment or docstring."""
    kind = kinds.illustrative_kind(path)
    if kind is not None:
        return Demotion(Severity.low, f"in {kind}")
    if text is not None and line_number in prose_lines(path, text):
        return Demotion(Severity.low, "in a comment or docstring")
    return None


def demotion(
    path: str, line_number: int, value: str, line: str, text: str | None
) -> Demotion | None:
    """The lower of what the value and the place say, with both reasons."""
    found = [d for d in (value_demotion(value, line), place_demotion(path, line_number, text)) if d]
    if not found:
        return None
    lowest = min(found, key=lambda d: d.severity.rank)
    return Demotion(lowest.severity, "; ".join(d.reason for d in found))


# Comment markers by file kind: `--` starts a comment in SQL but an option in a shell script.
_COMMENTS_BY_SUFFIX: dict[tuple[str, ...], tuple[str, ...]] = {
    (".sql", ".lua", ".hs", ".elm", ".ada"): ("--",),
    (
        ".js",
        ".jsx",
        ".ts",
        ".tsx",
        ".go",
        ".rs",
        ".java",
        ".kt",
        ".c",
        ".cc",
        ".cpp",
        ".h",
        ".hpp",
        ".cs",
        ".swift",
        ".scala",
        ".php",
        ".dart",
        ".groovy",
        ".css",
        ".scss",
    ): (
        "//",
        "/*",
        "*",
    ),
    (".html", ".htm", ".xml", ".vue", ".svg", ".md", ".rst"): ("<!--", ".. "),
    (".bat", ".cmd"): ("rem ", "REM ", "::"),
    (".ini", ".cfg", ".conf", ".properties"): ("#", ";"),
}
# Parsed files seen lately: their prose lines, keyed by a hash so that no text (and no secret
# in it) is kept once a run is over.
_PROSE: dict[str, frozenset[int]] = {}
_PROSE_MAX = 64
_PROSE_LOCK = threading.Lock()


def _python_prose(text: str) -> frozenset[int]:
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    with _PROSE_LOCK:
        known = _PROSE.get(key)
    if known is not None:
        return known
    lines = _parse_prose(text)
    with _PROSE_LOCK:
        if len(_PROSE) >= _PROSE_MAX:
            _PROSE.pop(next(iter(_PROSE)))
        _PROSE[key] = lines
    return lines


_DOC_START = re.compile(r"[rRuUbB]{0,2}(\"\"\"|\'\'\')")
_TRIPLE = re.compile(r"\"\"\"|\'\'\'")


def _parse_prose(text: str) -> frozenset[int]:
    """Comment lines, and the lines of strings that stand alone as statements (docstrings, prose
    blocks), by one scan of the lines: no parse, so a large branch pays almost nothing. A
    triple-quoted string opened inside code (`QUERY = \"\"\"...`) is code, not prose."""
    lines: set[int] = set()
    open_quote = ""  # the triple quote of the string we are inside, if any
    prose = False  # whether that string is a statement of its own
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.lstrip()
        if open_quote:
            if prose:
                lines.add(number)
            if line.count(open_quote) % 2 == 1:
                open_quote = ""
            continue
        if stripped.startswith("#"):
            lines.add(number)
            continue
        start = _DOC_START.match(stripped)
        quotes = _TRIPLE.findall(line)
        if start:
            lines.add(number)
            quote = start.group(1)
            if stripped[start.end() :].count(quote) % 2 == 0:
                open_quote, prose = quote, True
        elif quotes and line.count(quotes[0]) % 2 == 1:
            open_quote, prose = quotes[0], False
    return frozenset(lines)


def prose_lines(path: str, text: str) -> frozenset[int]:
    """Line numbers of comments and docstrings: Python exactly, other files by line start."""
    if kinds.is_python(path):
        return _python_prose(text.removeprefix("\ufeff"))
    name = PurePosixPath(path).name.lower()
    markers = next((m for ends, m in _COMMENTS_BY_SUFFIX.items() if name.endswith(ends)), ("#",))
    # Split on "\n" only: git's line numbers do not count form feeds or U+2028 as breaks.
    return frozenset(
        n for n, line in enumerate(text.split("\n"), start=1) if line.lstrip().startswith(markers)
    )
