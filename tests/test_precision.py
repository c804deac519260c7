"""Precision on the shapes real repositories have: each class of noise the offline report used to
raise, on a small repository built here (the examples are of a class, not the test set)."""

from __future__ import annotations

from agents.analyzers.merge import CREDENTIAL, problem_fingerprint
from agents.pipeline import analyze_branch
from agents.report import Finding, Report, RiskLevel, Severity, Source
from agents.roles.risk import assess
from tests.support.gitrepo import RepoBuilder

STRONG = "kX9mQ2vL7pR4wZ8nT5bY"  # a high-entropy value in no placeholder list


def credentials(report: Report) -> dict[tuple[str, int], Finding]:
    found = [f for f in report.findings if f.category == "secret" or f.rule in ("B105", "B106")]
    out: dict[tuple[str, int], Finding] = {}
    for finding in found:
        assert finding.file and finding.start_line
        key = (finding.file, finding.start_line)
        assert key not in out, f"two credential findings on one line: {found}"
        out[key] = finding
    return out


# -- 1. credentials that are not credentials ------------------------------------------------------


def test_credentials_in_tests_docs_examples_and_prose_are_demoted_with_a_reason(
    make_branch,
) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/placeholders",
        {
            "tests/test_db.py": f'DB = "postgresql://app:{STRONG}@db.internal.corp/app"\n'
            f'API_KEY = "{STRONG}"\n',
            "docs/setup.md": "Run:\n\n    export DATABASE_URL=postgres://scott:tiger@db.corp.io/app\n",
            "examples/settings.py": f'SECRET_KEY = "{STRONG}"\n',
            "shop/settings.py": 'SECRET_KEY = "dev"\n',
            "shop/local.py": 'API_TOKEN = "q7Zk2x"\n',
            "shop/django_settings.py": f'SECRET_KEY = "django-insecure-{STRONG}"\n',
            "shop/dsn.py": 'DSN = "mysql://username:password@localhost/shop"\n',
            "shop/client.py": (
                f'def connect():\n    """Connect.\n\n    password = "{STRONG}"\n    """\n'
                "    return None\n"
            ),
        },
    )
    report = analyze_branch(repo.root, "feature/placeholders")
    found = credentials(report)
    expect = {
        ("tests/test_db.py", 1): (Severity.low, "in a test file"),
        ("tests/test_db.py", 2): (Severity.low, "in a test file"),
        ("docs/setup.md", 3): (Severity.info, "placeholder credentials"),
        ("examples/settings.py", 1): (Severity.low, "in an example or fixture"),
        ("shop/settings.py", 1): (Severity.info, "a placeholder value"),
        ("shop/local.py", 1): (Severity.low, "a short value (6 characters)"),
        ("shop/django_settings.py", 1): (Severity.low, "development default ('insecure')"),
        ("shop/dsn.py", 1): (Severity.info, "placeholder credentials"),
        ("shop/client.py", 4): (Severity.low, "in a comment or docstring"),
    }
    for where, (severity, reason) in expect.items():
        assert where in found, f"{where} not reported at all (demote, never drop): {found}"
        assert found[where].severity is severity, (where, found[where])
        assert reason in found[where].detail, (where, found[where].detail)
    assert not any(f.severity.at_least(Severity.high) for f in report.findings)
    assert STRONG not in report.model_dump_json()  # demoted or not, the value stays masked


def test_real_credentials_keep_their_severity_wherever_they_are(make_branch) -> None:  # type: ignore[no-untyped-def]
    aws = "AKIA4HJXZQ2WBNVGL7PK"
    repo = make_branch(
        "feature/real",
        {
            "shop/prod.py": f'DB_PASSWORD = "{STRONG}"\n',
            "tests/test_keys.py": f'AWS_ACCESS_KEY_ID = "{aws}"\n',
            "docs/deploy.md": f"    # the key is {aws}\n",
        },
    )
    found = credentials(analyze_branch(repo.root, "feature/real"))
    assert found[("shop/prod.py", 1)].severity is Severity.high
    assert found[("tests/test_keys.py", 1)].severity is Severity.critical
    assert found[("docs/deploy.md", 1)].severity is Severity.critical


# -- 2. one problem, one finding ------------------------------------------------------------------


def test_one_credential_seen_by_several_tools_is_one_finding(make_branch) -> None:  # type: ignore[no-untyped-def]
    line = f'    connect(host="db", password="{STRONG}")'
    repo = make_branch(
        "feature/both",
        {"shop/db.py": f'password = "{STRONG}"\n\n\ndef go(connect):\n{line}\n'},
    )
    report = analyze_branch(repo.root, "feature/both")
    found = credentials(report)
    assert sorted(found) == [("shop/db.py", 1), ("shop/db.py", 5)]
    first = found[("shop/db.py", 1)]
    assert any(s.startswith("secrets ") for s in first.seen_by), first.seen_by
    assert "bandit B105" in first.seen_by
    assert "bandit B106" in found[("shop/db.py", 5)].seen_by
    assert "Seen by:" in first.detail
    assert STRONG not in report.model_dump_json()  # bandit quotes it; the report masks it
    # The identity is the problem's, not the tool's: the same whichever tool saw it.
    assert first.fingerprint == problem_fingerprint(
        CREDENTIAL, "shop/db.py", f'password = "{STRONG}"'
    )
    assert found[("shop/db.py", 5)].fingerprint == problem_fingerprint(
        CREDENTIAL, "shop/db.py", line
    )


# -- 3. the right line ----------------------------------------------------------------------------

_DICT = [
    "SETTINGS = {",
    '    "name": "shop",',
    '    "host": "db",',
    '    "port": 5432,',
    f'    "password": "{STRONG}",',
    '    "timeout": 30,',
    "}",
]


def test_a_credential_in_a_multi_line_dict_is_on_its_own_line(repo: RepoBuilder) -> None:
    repo.branch("feature/dict")
    repo.commit({"shop/conf.py": "\n".join(_DICT) + "\n"})
    repo.branch("feature/other-key")
    changed = [*_DICT]
    changed[5] = '    "timeout": 60,'
    repo.commit({"shop/conf.py": "\n".join(changed) + "\n"})
    repo.checkout("main")
    added = credentials(analyze_branch(repo.root, "feature/dict"))
    assert list(added) == [("shop/conf.py", 5)]
    # Another key of the dict changed: the password line did not, so it is not reported again.
    again = analyze_branch(repo.root, "feature/other-key", "feature/dict")
    assert credentials(again) == {}


def test_b105_and_b106_never_fire_for_empty_none_or_the_environment(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/empty",
        {
            "shop/auth_conf.py": (
                "import os\n\n"
                'password = ""\n'
                "token = None\n"
                'db_password = os.environ.get("DB_PASSWORD", "")\n'
                'secret = os.getenv("SECRET", "")\n\n\n'
                "def go(connect):\n"
                '    connect(password="")\n'
                '    connect(password=os.environ["PW"])\n'
            )
        },
    )
    assert credentials(analyze_branch(repo.root, "feature/empty")) == {}


# -- 4. the repository's own lint configuration ---------------------------------------------------

_PYPROJECT = """[project]
name = "shop"

[tool.ruff.lint]
ignore = ["F401"]

[tool.ruff.lint.per-file-ignores]
"shop/legacy/*" = ["F841"]
"""
_UNUSED = "import os\n\n\ndef f():\n    x = 1\n    return 2\n"


def test_the_repositorys_ruff_ignores_from_the_merge_base_apply(repo: RepoBuilder) -> None:
    repo.commit({"pyproject.toml": _PYPROJECT}, "ruff config")
    repo.branch("feature/lint")
    repo.commit({"shop/a.py": _UNUSED, "shop/legacy/b.py": _UNUSED})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/lint")
    lint = sorted((f.file, f.rule) for f in report.findings if f.source is Source.ruff)
    assert lint == [("shop/a.py", "F841")]
    assert "ruff honoured the repository's pyproject.toml at the base" in report.summary
    assert "ignore F401" in report.summary


def test_a_branch_cannot_silence_a_check_on_its_own_change(repo: RepoBuilder) -> None:
    repo.branch("feature/silence")
    repo.commit(
        {
            "ruff.toml": '[lint]\nignore = ["F841", "F401"]\n',
            "shop/a.py": _UNUSED,
        }
    )
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/silence")
    lint = sorted(f.rule for f in report.findings if f.source is Source.ruff)
    assert lint == ["F401", "F841"]
    assert "ruff honoured" not in report.summary


# -- 5. test idioms -------------------------------------------------------------------------------


def test_test_idioms_are_not_findings_but_the_same_in_source_is(make_branch) -> None:  # type: ignore[no-untyped-def]
    idioms = (
        "import pytest\n\n\n"
        "def test_raises():\n"
        "    with pytest.raises(ZeroDivisionError):\n"
        "        1 / 0\n\n\n"
        "def test_bare():\n"
        "    try:\n"
        "        pytest.fail()\n"
        "    except:\n"
        "        pass\n\n\n"
        "def test_never():\n"
        "    assert False\n\n\n"
        "def test_dup():\n"
        "    pass\n\n\n"
        "def test_dup():\n"
        "    pass\n"
    )
    source = (
        "def handle(job):\n    try:\n        job()\n    except:\n        pass\n    result = 1\n"
    )
    repo = make_branch("feature/tests", {"tests/test_auth.py": idioms, "shop/jobs.py": source})
    report = analyze_branch(repo.root, "feature/tests")
    in_tests = sorted(f.rule for f in report.findings if f.file == "tests/test_auth.py")
    assert in_tests == ["F811"], in_tests  # a duplicate test name hides a test: kept
    in_source = sorted(f.rule for f in report.findings if f.file == "shop/jobs.py")
    assert "E722" in in_source and "F841" in in_source
    # A test of the login code is not login code.
    assert not any(f.rule.startswith("sensitive-path") for f in report.findings)


def test_a_packages_init_re_exports_are_not_unused_imports_and_never_removed(make_branch) -> None:  # type: ignore[no-untyped-def]
    """`from .helpers import x` in `__init__.py` is the package's public face (flask's, most
    libraries'): flagging it is noise, and ruff's fix would delete the package's API."""
    repo = make_branch(
        "feature/api",
        {
            "shop/helpers.py": "def make_response():\n    return 1\n",
            "shop/__init__.py": "from .helpers import make_response\nfrom .cart import total\n",
            "shop/jobs.py": "import json\nimport os\n\n\ndef run():\n    return os.getcwd()\n",
        },
    )
    report = analyze_branch(repo.root, "feature/api")
    assert not [f for f in report.findings if f.file == "shop/__init__.py"]
    assert "F401" in [f.rule for f in report.findings if f.file == "shop/jobs.py"]
    for proposal in report.proposals:  # a fix may remove json from jobs.py, never the API
        assert "shop/__init__.py" not in proposal.content


# -- 6. heuristics that know what tests are -------------------------------------------------------


def test_a_renamed_moved_or_split_test_is_not_a_deleted_one(repo: RepoBuilder) -> None:
    repo.commit(
        {
            "tests/test_orders.py": (
                "def test_create():\n    pass\n\n\ndef test_cancel():\n    pass\n"
            )
        },
        "orders tests",
    )
    repo.branch("feature/split")
    repo.commit(
        {
            "tests/test_orders.py": None,
            "tests/orders/test_create.py": "def test_create():\n    assert 1\n",
            "tests/orders/test_cancel.py": "def test_cancel():\n    assert 1\n",
            "tests/test_cart.py": (
                "from shop.cart import total\n\n\ndef test_total():\n    assert total([]) == 0\n"
            ),
        }
    )
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/split")
    assert [f for f in report.findings if f.rule == "deleted-test"] == []


def test_a_test_really_removed_is_still_reported(repo: RepoBuilder) -> None:
    repo.branch("feature/gone")
    repo.commit({"tests/test_cart.py": "from shop.cart import total\n"})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/gone")
    [deleted] = [f for f in report.findings if f.rule == "deleted-test"]
    assert "test_total" in deleted.detail


def test_untested_code_skips_private_modules_and_modules_tests_import(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/code",
        {
            "shop/_internal.py": "def helper():\n    return 1\n",
            "shop/_impl/engine.py": "def run():\n    return 1\n",
            "shop/cart.py": (
                "def total(prices):\n    return sum(prices)\n\n\n"
                "def discount(prices):\n    return total(prices) * 0.9\n"
            ),
            "shop/report.py": "def render(rows):\n    return rows\n",
        },
    )
    report = analyze_branch(repo.root, "feature/code")
    untested = {f.file for f in report.findings if f.rule == "untested-code"}
    assert untested == {"shop/report.py"}


_WORKFLOW = """name: tests
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        python-version: ["3.10", "3.11"]
    steps:
      - uses: actions/checkout@v4
      - run: pytest
"""


def _ci_findings(repo: RepoBuilder, name: str, text: str) -> list[Finding]:
    repo.branch(name, "main")
    repo.commit({".github/workflows/tests.yml": text})
    repo.checkout("main")
    return [f for f in analyze_branch(repo.root, name).findings if f.rule == "sensitive-path:ci"]


def test_a_ci_matrix_edit_is_not_a_risky_ci_change(repo: RepoBuilder) -> None:
    repo.commit({".github/workflows/tests.yml": _WORKFLOW}, "ci")
    matrix = _WORKFLOW.replace('["3.10", "3.11"]', '["3.10", "3.11", "3.12"]')
    assert _ci_findings(repo, "feature/matrix", matrix) == []
    [bump] = _ci_findings(repo, "feature/bump", _WORKFLOW.replace("checkout@v4", "checkout@v5"))
    assert bump.severity is Severity.info
    [risky] = _ci_findings(
        repo, "feature/target", _WORKFLOW.replace("on: [push]", "on: [pull_request_target]")
    )
    assert risky.severity is Severity.medium
    [injected] = _ci_findings(
        repo,
        "feature/inject",
        _WORKFLOW.replace("- run: pytest", '- run: echo "${{ github.event.issue.title }}"'),
    )
    assert injected.severity is Severity.high


# -- 7. a verdict that follows evidence, not counts -----------------------------------------------


def _f(severity: Severity, rule: str, line: int, confidence: float = 0.8) -> Finding:
    bandit = rule[:1] == "B" and rule[1:].isdigit()
    return Finding(
        fingerprint=f"{rule}{line}",
        agent="code_review",
        category="secret",
        rule=rule,
        severity=severity,
        confidence=confidence,
        file="tests/test_x.py",
        start_line=line,
        title=f"{rule} on line {line}",
        source=Source.bandit if bandit else Source.secrets,
    )


def test_many_findings_of_one_kind_do_not_make_a_change_critical() -> None:
    many_highs = [_f(Severity.high, "Secret Keyword", n) for n in range(1, 25)]
    risk = assess(many_highs)
    assert risk.level is RiskLevel.high
    assert risk.score < 75
    assert assess(many_highs[:1]).score == risk.score  # more of the same kind adds nothing
    assert risk.reasons[0].startswith("high because of the worst finding")


def test_critical_and_a_score_of_100_need_a_critical_finding() -> None:
    kinds = ["B602", "B307", "B608", "B506", "B301", "B105", "Secret Keyword"]
    highs = [_f(Severity.high, rule, n) for n, rule in enumerate(kinds, start=1)]
    assert assess(highs).level is RiskLevel.high
    assert assess(highs).score <= 74
    with_critical = [*highs, _f(Severity.critical, "AWS Access Key", 99)]
    risk = assess(with_critical)
    assert risk.level is RiskLevel.critical
    assert "AWS Access Key" in risk.reasons[0]
    assert assess(with_critical[-1:]).score < risk.score  # more kinds add a little


def test_low_confidence_findings_do_not_set_the_level() -> None:
    assert assess([_f(Severity.high, "guess", 1, confidence=0.3)]).level is RiskLevel.medium
    assert assess([]).level is RiskLevel.low
    assert assess([]).score == 0


def test_what_bandit_itself_doubts_is_not_high(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "def compile_insert(table, columns):\n"
        '    text = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM staging"\n'
        "    return text\n"
    )
    repo = make_branch("feature/compiler", {"shop/sql/compiler.py": code})
    report = analyze_branch(repo.root, "feature/compiler")
    [b608] = [f for f in report.findings if f.rule == "B608"]
    # SQL-looking text built far from any execute(): bandit's confidence is low.
    assert b608.severity is Severity.medium
    assert "not confident" in b608.detail


def test_a_file_that_never_parsed_is_not_the_branchs_syntax_error(repo: RepoBuilder) -> None:
    py2 = "".join(f'print "line {n}"\n' for n in range(30))
    repo.commit({"tools/legacy.py": py2}, "python 2 script")
    repo.branch("feature/legacy")
    repo.commit({"tools/legacy.py": py2 + 'print "one more"\n', "shop/new.py": "def f(:\n"})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/legacy")
    syntax = [(f.file, f.rule) for f in report.findings if f.rule == "invalid-syntax"]
    # One finding for the file the branch broke; none for the one that never parsed.
    assert syntax == [("shop/new.py", "invalid-syntax")]
    assert "tools/legacy.py does not parse as Python 3 at the base either" in report.summary
    # ... and what could not be checked there is said, not hidden.
    assert "bandit could not parse" in report.summary and "tools/legacy.py" in report.summary


def test_a_shell_with_a_constant_command_and_a_bare_reraise_are_not_high(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import os\n\n\n"
        "def publish():\n"
        '    os.system("python -m build")\n\n\n'
        "def handle():\n"
        "    raise\n"
    )
    report = analyze_branch(
        make_branch("feature/const", {"shop/release.py": code}).root, "feature/const"
    )
    by_rule = {f.rule: f.severity for f in report.findings if f.file == "shop/release.py"}
    assert by_rule["B605"] is Severity.low  # bandit: "seems safe"
    assert by_rule["PLE0704"] is Severity.low
    assert report.risk.level is RiskLevel.low


def test_an_undefined_name_python_never_evaluates_is_not_high(make_branch) -> None:  # type: ignore[no-untyped-def]
    deferred = (
        "from __future__ import annotations\n\n\n"
        "def build(items: list[Missing]) -> Other:\n"
        "    return crash(items)\n"
    )
    report = analyze_branch(
        make_branch(
            "feature/annotations",
            {"shop/build.py": deferred, "shop/typed.pyi": "def f(x: Undefined) -> None: ...\n"},
        ).root,
        "feature/annotations",
    )
    f821 = {
        (f.file, f.title.split("`")[1]): f.severity for f in report.findings if f.rule == "F821"
    }
    assert f821 == {
        ("shop/build.py", "Missing"): Severity.medium,
        ("shop/build.py", "Other"): Severity.medium,
        ("shop/build.py", "crash"): Severity.high,  # this one raises NameError when called
        ("shop/typed.pyi", "Undefined"): Severity.medium,
    }


def test_demo_accounts_and_service_hosts_in_connection_urls(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/urls",
        {
            "setup.cfg": "[db]\nmssql = mssql+pyodbc://scott:tiger^5HHH@mssql2022:1433/test\n"
            f"pg = postgresql://app:{STRONG}@db:5432/app\n"
            f"prod = postgresql://app:{STRONG}@db.prod.corp.io/app\n"
        },
    )
    found = credentials(analyze_branch(repo.root, "feature/urls"))
    assert found[("setup.cfg", 2)].severity is Severity.info
    assert found[("setup.cfg", 3)].severity is Severity.low
    assert "local or example host" in found[("setup.cfg", 3)].detail
    assert "(db)" not in found[("setup.cfg", 3)].detail  # no part of a URL in a reason
    assert found[("setup.cfg", 4)].severity is Severity.high


def test_bandit_in_test_code_reports_only_credentials(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import subprocess\n\nimport requests\n\n\n"
        "def test_call():\n"
        '    requests.get("http://127.0.0.1:8000/")\n'
        '    subprocess.run("ls /tmp/x", shell=True)\n'
        f'    login(password="{STRONG}")\n'
    )
    report = analyze_branch(
        make_branch("feature/t", {"tests/test_http.py": code}).root, "feature/t"
    )
    bandit = [
        f for f in report.findings if f.source.value == "bandit" or "bandit B106" in f.seen_by
    ]
    assert [(f.start_line, f.severity) for f in bandit] == [(9, Severity.low)]


def test_tests_removed_with_the_code_they_tested_are_low(repo: RepoBuilder) -> None:
    repo.commit(
        {
            "shop/netrc.py": "".join(f"def helper_{n}():\n    return {n}\n\n\n" for n in range(10)),
            "tests/test_netrc.py": "def test_netrc():\n    pass\n",
        },
        "netrc support",
    )
    repo.branch("feature/drop-netrc")
    repo.commit({"shop/netrc.py": None, "tests/test_netrc.py": None})
    repo.checkout("main")
    [deleted] = [
        f
        for f in analyze_branch(repo.root, "feature/drop-netrc").findings
        if f.rule == "deleted-test"
    ]
    assert deleted.severity is Severity.low
    assert "removes more code than it adds" in deleted.detail


def test_bandit_never_shows_the_password_it_quotes() -> None:
    from agents.analyzers.security import _finding

    item = {
        "test_id": "B106",
        "test_name": "hardcoded_password_funcarg",
        "line_number": 2,
        "issue_severity": "LOW",
        "issue_confidence": "MEDIUM",
        "issue_text": f"Possible hardcoded password: '{STRONG}'",
    }
    line = f'    connect(password="{STRONG}")'
    finding = _finding(item, "shop/db.py", {2: line}, f"def go():\n{line}\n", "code_review")
    assert finding is not None
    assert STRONG not in finding.model_dump_json()
    assert "kX9m********" in finding.title


def test_one_kind_of_problem_named_by_several_tools_counts_once() -> None:
    rules = ["Secret Keyword", "Basic Auth Credentials", "Hex High Entropy String"]
    names = [_f(Severity.high, rule, n) for n, rule in enumerate(rules, start=1)]
    assert assess(names).score == assess(names[:1]).score  # all credentials: one kind
    areas = [
        _f(Severity.info, "sensitive-path:auth", n).model_copy(update={"file": f"auth/m{n}.py"})
        for n in range(1, 16)
    ]
    assert assess(areas).score == assess(areas[:1]).score  # fifteen auth files, one area


def test_no_tool_repeats_a_secret_in_its_words(make_branch) -> None:  # type: ignore[no-untyped-def]
    stripe = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    code = f'ALLOWED = {{"{stripe}", "{stripe}"}}\npassword = """first \'x\'\n{STRONG}"""\n'
    report = analyze_branch(
        make_branch("feature/echo", {"shop/keys.py": code}).root, "feature/echo"
    )
    dumped = report.model_dump_json()
    assert any(f.rule == "B033" for f in report.findings)  # ruff quotes the duplicate item
    assert stripe not in dumped
    assert STRONG not in dumped
    # ruff's fix (drop the duplicate item) would carry the key into the thread: not offered.
    assert report.proposals == []
    assert "the change would show a secret" in report.summary


# -- odd input: never a lost report ------------------------------------------------------------


def test_an_unknown_rule_in_the_repositorys_ruff_config_does_not_stop_linting(
    repo: RepoBuilder,
) -> None:
    repo.commit(
        {
            "pyproject.toml": '[tool.ruff.lint]\nignore = ["W503", "F401"]\n'
            '[tool.ruff.lint.per-file-ignores]\n"odd/[" = ["F841"]\n'
        },
        "odd config",
    )
    repo.branch("feature/w503")
    repo.commit({"shop/a.py": _UNUSED})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/w503")
    # W503 (flake8's, unknown to ruff) is dropped; the glob ruff refuses makes it lint without
    # the configuration, and the summary says so.
    assert {"F401", "F841"} <= {f.rule for f in report.findings}
    assert "ruff could not apply the repository's pyproject.toml ignores" in report.summary
    assert all(a.status == "done" for a in report.agents)


def test_deep_nesting_and_long_lines_do_not_cost_the_other_findings(make_branch) -> None:  # type: ignore[no-untyped-def]
    deep = "BANNER = " + " + ".join(['"="'] * 600) + "\n"
    aws = 'AWS_ACCESS_KEY_ID = "AKIA4HJXZQ2WBNVGL7PK"\n'
    long_ci = "on: push\njobs: {}\n# " + " " * 20000 + "!\n"
    report = analyze_branch(
        make_branch(
            "feature/odd",
            {
                "shop/banner.py": deep + aws,
                ".github/workflows/ci.yml": long_ci,
                "shop/q.py": "def f(c):\n    c.execute(" + "?" * 20000 + ")\n",
            },
        ).root,
        "feature/odd",
    )
    assert "AWS Access Key" in {f.rule for f in report.findings}
    assert all(a.status == "done" for a in report.agents), report.agents


def test_symbols_inside_a_strong_password_do_not_make_it_a_placeholder(make_branch) -> None:  # type: ignore[no-untyped-def]
    repo = make_branch(
        "feature/symbols",
        {"shop/conf.py": 'DB_PASSWORD = "Xk9$mQ2!vL7#pR4z"\nAPI_KEY = "${API_KEY}"\n'},
    )
    found = credentials(analyze_branch(repo.root, "feature/symbols"))
    assert found[("shop/conf.py", 1)].severity is Severity.high
    templated = found.get(("shop/conf.py", 2))  # a template is not reported, or only as info
    assert templated is None or templated.severity is Severity.info


def test_an_undefined_name_in_a_test_is_medium(make_branch) -> None:  # type: ignore[no-untyped-def]
    code = "def test_forward():\n    rows: list[Later] = []\n    assert not rows\n"
    report = analyze_branch(
        make_branch("feature/fw", {"tests/test_fw.py": code}).root, "feature/fw"
    )
    [f821] = [f for f in report.findings if f.rule == "F821"]
    assert f821.severity is Severity.medium
    assert "a NameError would fail the suite" in f821.detail


def test_a_flake8_configuration_is_honoured_when_ruff_has_none(repo: RepoBuilder) -> None:
    repo.commit(
        {
            "setup.cfg": "[metadata]\nname = shop\n\n[flake8]\n"
            "ignore = E722,W503,N801\nper-file-ignores =\n    shop/legacy/*:F841\n"
        },
        "flake8 config",
    )
    repo.branch("feature/f8")
    bare = "def f(job):\n    try:\n        job()\n    except:\n        pass\n    x = 1\n"
    repo.commit({"shop/a.py": bare, "shop/legacy/b.py": bare})
    repo.checkout("main")
    report = analyze_branch(repo.root, "feature/f8")
    lint = sorted((f.file, f.rule) for f in report.findings if f.source is Source.ruff)
    assert lint == [("shop/a.py", "F841")]  # W503 and N801 are flake8's own: dropped, no error
    assert "flake8 configuration in setup.cfg" in report.summary
