"""Recall: the shapes re-introduced vulnerabilities take, found on the right line with high
severity, on small repositories built here."""

from __future__ import annotations

import pytest

from agents.pipeline import analyze_branch
from agents.report import Finding, Report, Severity
from tests.support.gitrepo import RepoBuilder


def on_line(report: Report, path: str, line: int) -> list[Finding]:
    return [f for f in report.findings if f.file == path and f.start_line == line]


def swap(repo: RepoBuilder, name: str, before: str, after: str) -> Report:
    repo.commit({"shop/io.py": before}, f"safe {name}")
    repo.branch(f"feature/{name}")
    repo.commit({"shop/io.py": after}, f"unsafe {name}")
    repo.checkout("main")
    return analyze_branch(repo.root, f"feature/{name}")


# (name, the safe module, the unsafe one, what the finding names as removed)
REVERSALS = [
    (
        "xml",
        "from defusedxml.ElementTree import fromstring\n\n\ndef read(data):\n"
        "    return fromstring(data)\n",
        "from xml.etree.ElementTree import fromstring\n\n\ndef read(data):\n"
        "    return fromstring(data)\n",
        1,
        "defusedxml",
    ),
    (
        "yaml",
        "import yaml\n\n\ndef read(data):\n    return yaml.safe_load(data)\n",
        "import yaml\n\n\ndef read(data):\n    return yaml.load(data, Loader=yaml.Loader)\n",
        5,
        "yaml.safe_load",
    ),
    (
        "tempfile",
        "import tempfile\n\n\ndef scratch():\n    return tempfile.mkstemp()[1]\n",
        "import tempfile\n\n\ndef scratch():\n    return tempfile.mktemp()\n",
        5,
        "tempfile.mkstemp",
    ),
    (
        "shell",
        "import subprocess\n\n\ndef pack(name):\n"
        '    subprocess.run(["tar", "czf", name, "data"], check=True)\n',
        "import subprocess\n\n\ndef pack(name):\n"
        '    subprocess.run("tar czf " + name + " data", shell=True, check=True)\n',
        5,
        "an argument list",
    ),
    (
        "sql",
        "def find(cursor, key):\n"
        '    cursor.execute("SELECT * FROM orders WHERE key = %s", (key,))\n',
        "def find(cursor, key):\n"
        "    cursor.execute(\"SELECT * FROM orders WHERE key = '%s'\" % key)\n",
        2,
        "a parameterised query",
    ),
    (
        "eval",
        "import ast\n\n\ndef parse(text):\n    return ast.literal_eval(text)\n",
        "import ast\n\n\ndef parse(text):\n    return eval(text)\n",
        5,
        "ast.literal_eval",
    ),
    (
        "verify",
        "import requests\n\n\ndef get(u):\n    return requests.get(u, timeout=5, verify=True)\n",
        "import requests\n\n\ndef get(u):\n    return requests.get(u, timeout=5, verify=False)\n",
        5,
        "TLS verification",
    ),
    (
        "random",
        "import secrets\n\n\ndef token():\n    return secrets.token_hex(16)\n",
        "import random\n\n\ndef token():\n    return '%032x' % random.getrandbits(128)\n",
        5,
        "the secrets module",
    ),
    (
        "autoescape",
        "from jinja2 import Environment\n\nENV = Environment(autoescape=True)\n",
        "from jinja2 import Environment\n\nENV = Environment(autoescape=False)\n",
        3,
        "autoescaping",
    ),
    (
        "compare",
        "import hmac\n\n\ndef valid(signature, expected):\n"
        "    return hmac.compare_digest(signature, expected)\n",
        "import hmac\n\n\ndef valid(signature, expected):\n    return signature == expected\n",
        5,
        "hmac.compare_digest",
    ),
]


@pytest.mark.parametrize(("name", "before", "after", "line", "safe"), REVERSALS)
def test_hardening_reverted_is_high_on_the_added_line(
    repo: RepoBuilder, name: str, before: str, after: str, line: int, safe: str
) -> None:
    report = swap(repo, name, before, after)
    found = [f for f in on_line(report, "shop/io.py", line) if f.severity is Severity.high]
    assert found, f"{name}: nothing high on line {line}: {report.findings}"
    assert any(safe in f.detail for f in found), [f.detail for f in found]
    # One problem, one finding: bandit's own check on the same line is merged into it.
    assert len(on_line(report, "shop/io.py", line)) == 1, on_line(report, "shop/io.py", line)


def test_a_refactor_that_keeps_the_unsafe_call_is_no_reversal(repo: RepoBuilder) -> None:
    before = (
        "import yaml\n\n\ndef read(data):\n    yaml.safe_load(data)\n    return yaml.load(data)\n"
    )
    after = "import yaml\n\n\ndef read(blob):\n    return yaml.load(blob)\n"
    report = swap(repo, "refactor", before, after)
    assert not any(f.rule.endswith(":reverted") for f in report.findings)


# -- what bandit does not see ---------------------------------------------------------------------


def test_tls_verification_turned_off_by_assignment(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import ssl\n\nimport requests\n\n\n"
        "def session():\n"
        "    s = requests.Session()\n"
        "    s.verify = False\n"
        "    return s\n\n\n"
        "def context():\n"
        "    ctx = ssl.create_default_context()\n"
        "    ctx.check_hostname = False\n"
        "    ctx.verify_mode = ssl.CERT_NONE\n"
        "    return ctx\n\n\n"
        "def chosen(verify):\n"
        "    ctx = ssl.create_default_context()\n"
        "    if verify is False:\n"
        "        ctx.check_hostname = False\n"
        "    return ctx\n"
    )
    report = analyze_branch(make_branch("feature/tls", {"shop/net.py": code}).root, "feature/tls")
    tls = sorted(
        f.start_line
        for f in report.findings
        if f.file == "shop/net.py" and "TLS" in f.title and f.severity is Severity.high
    )
    # The explicit opt-out under `if verify is False:` is how a client implements the switch.
    assert tls == [8, 14, 15]


def test_sql_from_a_sql_constant_that_reaches_execute(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "QUERY = \"SELECT * FROM users WHERE name = '%s'\"\n"
        'BY_ID = "SELECT * FROM users WHERE id = {}"\n\n\n'
        "def find(cursor, name):\n"
        "    cursor.execute(QUERY % name)\n\n\n"
        "def by_id(cursor, key):\n"
        "    sql = BY_ID.format(key)\n"
        "    cursor.execute(sql)\n\n\n"
        "def safe(cursor, name):\n"
        '    cursor.execute("SELECT * FROM users WHERE name = %s", (name,))\n'
    )
    report = analyze_branch(make_branch("feature/sql", {"shop/users.py": code}).root, "feature/sql")
    sql = sorted(
        f.start_line
        for f in report.findings
        if f.file == "shop/users.py" and f.rule == "problem:sql-injection"
    )
    assert sql == [6, 11]
    assert all(f.severity is Severity.high for f in report.findings if f.start_line in sql)


def test_xml_through_an_import_fallback_or_alias(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "try:\n"
        "    from defusedxml.ElementTree import fromstring\n"
        "except ImportError:\n"
        "    from xml.etree.ElementTree import fromstring\n"
        "from xml.dom import minidom as md\n\n\n"
        "def read(data):\n"
        "    return fromstring(data)\n\n\n"
        "def read_dom(data):\n"
        "    return md.parseString(data)\n"
    )
    report = analyze_branch(make_branch("feature/xml", {"shop/xmlio.py": code}).root, "feature/xml")
    xml = {
        f.start_line: f
        for f in report.findings
        if f.file == "shop/xmlio.py" and f.severity is Severity.high
    }
    assert sorted(xml) == [9, 13], report.findings
    assert "fallback" in xml[9].detail


# -- severity of deserialization ------------------------------------------------------------------


def test_deserialization_of_outside_data_is_high(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import marshal\nimport pickle\nimport shelve\n\nimport jsonpickle\nimport yaml\n\n\n"
        "def load(blob, path):\n"
        "    a = pickle.loads(blob)\n"
        "    b = marshal.loads(blob)\n"
        "    c = yaml.load(blob)\n"
        "    d = jsonpickle.decode(blob)\n"
        "    e = shelve.open(path)\n"
        "    return a, b, c, d, e\n"
    )
    report = analyze_branch(
        make_branch("feature/load", {"shop/load.py": code}).root, "feature/load"
    )
    lines = {f.start_line: f.severity for f in report.findings if f.category == "security"}
    assert {n: lines.get(n) for n in range(10, 15)} == {n: Severity.high for n in range(10, 15)}
    assert report.risk.level.value == "high"


# -- sensitive areas ------------------------------------------------------------------------------


def test_sessions_cookies_redirects_sso_jwt_crypto_and_permissions_are_sensitive(
    make_branch,
) -> None:  # type: ignore[no-untyped-def]
    paths = [
        "shop/sessions.py",
        "shop/cookies.py",
        "shop/redirects.py",
        "shop/saml/sso.py",
        "shop/jwt.py",
        "shop/oauth2/client.py",
        "shop/crypto_utils.py",
        "shop/permissions.py",
    ]
    files: dict[str, str | bytes | None] = {p: "VALUE = 1\n" for p in paths}
    files["tests/test_sessions.py"] = "def test_s():\n    pass\n"
    report = analyze_branch(make_branch("feature/areas", files).root, "feature/areas")
    sensitive = {f.file for f in report.findings if f.rule == "sensitive-path:auth"}
    assert sensitive == set(paths)


def test_a_hand_written_constant_time_compare_replaced_by_equality(repo: RepoBuilder) -> None:
    before = (
        "import hmac\n\n_compare = getattr(hmac, 'compare_digest', None)\n\n\n"
        "def check(cert_digest, expected):\n"
        "    if not _const_compare_digest(cert_digest, expected):\n"
        "        raise ValueError('bad fingerprint')\n"
    )
    after = (
        "def check(cert_digest, expected):\n"
        "    if cert_digest != expected:\n"
        "        raise ValueError('bad fingerprint')\n"
    )
    report = swap(repo, "digest", before, after)
    [found] = on_line(report, "shop/io.py", 2)
    assert found.severity is Severity.high
    assert "compare_digest" in found.detail


def test_ordinary_refactors_are_not_reversals(repo: RepoBuilder) -> None:
    before = (
        "import hmac\n\nfrom defusedxml.ElementTree import fromstring\n\n\n"
        "def read(data):\n    return fromstring(data)\n\n\n"
        "def same(a, b):\n    return hmac.compare_digest(a, b)\n"
    )
    after = (
        "from xml.etree.ElementTree import Element\n\n"
        "from defusedxml.ElementTree import fromstring\n\n\n"
        "def read(data):\n    return fromstring(data)\n\n\n"
        "def build(design, platform):\n"
        '    if design == "compact" or platform.machine() == "arm64":\n'
        '        return Element("x")\n'
    )
    report = swap(repo, "refactor2", before, after)
    assert not any(f.rule.endswith(":reverted") for f in report.findings), report.findings


def test_sql_names_are_per_function_and_a_forms_own_verify_flag_is_no_tls(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "def a(cur, t):\n"
        '    query = "SELECT * FROM %s" % t\n'
        "    return query\n\n\n"
        "def b(cur):\n"
        '    query = "SELECT 1 FROM dual"\n'
        "    cur.execute(query)\n\n\n"
        "class Form:\n"
        "    def skip(self):\n"
        "        self.verify = False\n"
    )
    report = analyze_branch(
        make_branch("feature/scopes", {"shop/db.py": code}).root, "feature/scopes"
    )
    assert not any(
        f.rule in ("problem:sql-injection", "problem:tls-verification-off") for f in report.findings
    ), report.findings
