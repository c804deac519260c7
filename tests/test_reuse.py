"""A re-run pays only for what changed: the model's answers are kept by what was sent, and a
question asked before is answered from them, counted at the fake Messages API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update

from agents.learnings import Learning, Learnings
from agents.pipeline import analyze_branch
from agents.report import Report, Source
from agents.reuse import AnswerStore, MemoryAnswers
from bot.store.answers import AnswerCache
from bot.store.answers_sqlite import SqliteAnswers, current
from bot.store.db import make_engine, session_scope, upgrade
from bot.store.models import AnswerRow
from bot.store.types import utcnow
from tests.support.fakes.anthropic_api import FakeAnthropic, Recorded
from tests.support.gitrepo import RepoBuilder
from tests.support.llm_helpers import model_env, session_for
from tests.support.processes import clean_env
from tests.support.services import fresh_postgres, needs_postgres

FILES = {
    f"shop/part{n}.py": f"def price_{n}(rows):\n    total = 0\n    for row in rows:\n"
    f"        total += row[{n}]\n    return total\n"
    for n in range(1, 6)
}


def review(body: dict[str, Any]) -> dict[str, Any]:
    """One finding per file shown, on its line 4."""
    user = Recorded("", {}, body, 0).user
    return {
        "findings": [
            {
                "file": path,
                "start_line": 4,
                "end_line": 4,
                "severity": "medium",
                "category": "error-handling",
                "title": f"{path} indexes a row that may be short",
                "detail": "A row with fewer columns raises IndexError.",
                "suggestion": "Check the row's length first.",
                "confidence": 0.6,
            }
            for path in re.findall(r'<file path="([^"]+)"', user)
        ],
        "patches": [],
    }


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        server.responders["code_review"] = review
        yield server


@pytest.fixture
def branch(repo: RepoBuilder) -> RepoBuilder:
    repo.branch("feature/prices")
    repo.commit(FILES)
    repo.checkout("main")
    return repo


def analyze(
    repo: RepoBuilder, fake: FakeAnthropic, answers: AnswerStore, **kw: Any
) -> tuple[Report, list[Recorded]]:
    before = len(fake.requests)
    session = session_for(fake, answers=answers)
    report = analyze_branch(repo.root, "feature/prices", llm=session, **kw)
    return report, fake.requests[before:]


def model_findings(report: Report) -> set[tuple[str | None, str]]:
    return {(f.file, f.fingerprint) for f in report.findings if f.source is Source.llm}


def reviewed_files(requests: list[Recorded]) -> list[str]:
    return sorted(
        path
        for r in requests
        if r.path == "/v1/messages" and r.role == "code_review"
        for path in re.findall(r'<file path="([^"]+)"', r.user)
    )


def test_a_rerun_at_the_same_head_makes_no_model_call(
    branch: RepoBuilder, fake: FakeAnthropic
) -> None:
    answers = MemoryAnswers()
    first, sent = analyze(branch, fake, answers)
    assert reviewed_files(sent) == sorted(FILES)
    assert first.reuse.units_reused == 0 and first.reuse.calls == 0
    second, again = analyze(branch, fake, answers)
    assert again == []  # no message, no token count: nothing reached the API
    assert model_findings(second) == model_findings(first) != set()
    assert second.usage.cost_usd == 0 and second.llm_calls == []
    assert second.reuse.units_sent == 0 and second.reuse.units_reused >= len(FILES)
    assert second.coverage.files_analyzed == first.coverage.files_analyzed
    assert "not sent again" in second.summary


def test_after_a_push_only_the_changed_file_goes_to_the_model(
    branch: RepoBuilder, fake: FakeAnthropic
) -> None:
    answers = MemoryAnswers()
    first, _ = analyze(branch, fake, answers)
    branch.checkout("feature/prices")
    branch.commit({"shop/part3.py": FILES["shop/part3.py"] + "\n\ndef more():\n    return 3\n"})
    branch.checkout("main")
    third, sent = analyze(branch, fake, answers)
    assert reviewed_files(sent) == ["shop/part3.py"]
    # Every file is still covered, and the unchanged ones keep their findings.
    assert third.coverage.files_analyzed == first.coverage.files_analyzed
    assert model_findings(third) == model_findings(first)
    assert third.reuse.units_reused >= len(FILES) - 1
    assert not [s for s in third.coverage.files_skipped if "model" in s.reason]


def test_a_new_learning_asks_every_question_again(branch: RepoBuilder, fake: FakeAnthropic) -> None:
    """The team's learnings are part of the prompt, so part of the key."""
    answers = MemoryAnswers()
    analyze(branch, fake, answers)
    learned = Learnings(learnings=[Learning("L1", "code_review", "Money is in cents.")])
    _, sent = analyze(branch, fake, answers, learnings=learned)
    assert reviewed_files(sent) == sorted(FILES)


def test_a_store_that_fails_is_a_miss_never_a_failed_run(
    branch: RepoBuilder, fake: FakeAnthropic
) -> None:
    class Broken:
        def get(self, key: str) -> str | None:
            raise OSError("disk gone")

        def put(self, key: str, kind: str, value: str) -> None:
            raise OSError("disk gone")

    report, sent = analyze(branch, fake, Broken())
    assert reviewed_files(sent) == sorted(FILES)
    assert report.complete and model_findings(report)


def _shared_by_two_workers(url: str, repo: RepoBuilder, fake: FakeAnthropic) -> None:
    upgrade(url)
    one, two = make_engine(url), make_engine(url)
    try:
        bounds = {"max_bytes": 10_000_000, "max_age_days": 30}
        analyze(repo, fake, AnswerCache(one, **bounds))
        report, sent = analyze(repo, fake, AnswerCache(two, **bounds))
        assert sent == [] and report.reuse.units_sent == 0
    finally:
        one.dispose()
        two.dispose()


def test_the_store_shares_answers_between_workers_on_sqlite(
    tmp_path: Path, branch: RepoBuilder, fake: FakeAnthropic
) -> None:
    _shared_by_two_workers(f"sqlite:///{tmp_path / 'chatops.db'}", branch, fake)


@needs_postgres
def test_the_store_shares_answers_between_workers_on_postgres(
    branch: RepoBuilder, fake: FakeAnthropic
) -> None:
    with fresh_postgres() as url:
        _shared_by_two_workers(url, branch, fake)


def _cache(kind: str, url: str, engine: Any, **bounds: float) -> AnswerStore:
    """The bot's store (SQLAlchemy, any database) or the command line's (SQLite, stdlib)."""
    if kind == "stdlib":
        return SqliteAnswers(Path(url.removeprefix("sqlite:///")), **bounds)  # type: ignore[arg-type]
    return AnswerCache(engine, **bounds)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sqlalchemy", "stdlib"])
def test_the_store_is_bounded_by_age_and_size(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    upgrade(url)
    engine = make_engine(url)
    cache: Any = _cache(kind, url, engine, max_bytes=2_500, max_age_days=30)
    for n in range(5):
        cache.put(f"k{n}", "answer", "x" * 1_000)
    cache.put("k0", "answer", "y")  # kept once: the first answer stays
    assert cache.get("k0") == "x" * 1_000
    with session_scope(engine) as session:
        old = utcnow() - timedelta(days=31)
        session.execute(update(AnswerRow).where(AnswerRow.key == "k4").values(used_at=old))
        for n, key in enumerate(["k0", "k1", "k2", "k3"]):
            used = utcnow() - timedelta(hours=10 - n)
            session.execute(update(AnswerRow).where(AnswerRow.key == key).values(used_at=used))
    assert cache.prune() == 3  # k4 by age; then k0 and k1, the least recently used, by size
    assert [cache.get(k) is not None for k in ("k0", "k1", "k2", "k3", "k4")] == [
        False,
        False,
        True,
        True,
        False,
    ]
    assert cache.stats() == (2, 2_000)
    engine.dispose()


def _many_at_once(url: str, kind: str = "sqlalchemy") -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        cache = _cache(kind, url, engine, max_bytes=10_000_000, max_age_days=30)
        cache.put("k1", "bandit", "first")
        # 1,200 keys: more than one batch of the IN lists; one already kept, one given twice.
        items = [(f"k{n}", "bandit", f"v{n}") for n in range(1, 1_201)] + [("k7", "bandit", "dup")]
        cache.put_many(items)
        found = cache.get_many([f"k{n}" for n in range(0, 1_202)])
        assert len(found) == 1_200 and "k0" not in found and "k1201" not in found
        assert found["k1"] == "first" and found["k7"] == "v7" and found["k1200"] == "v1200"
        # A stale entry read in a batch counts as used again (so pruning by age spares it).
        with session_scope(engine) as session:
            old = utcnow() - timedelta(days=3)
            session.execute(update(AnswerRow).where(AnswerRow.key == "k2").values(used_at=old))
        cache.get_many(["k2"])
        with session_scope(engine) as session:
            row = session.get(AnswerRow, "k2")
            assert row is not None and utcnow() - row.used_at < timedelta(hours=1)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlalchemy", "stdlib"])
def test_the_store_reads_and_keeps_many_answers_at_once_on_sqlite(
    tmp_path: Path, kind: str
) -> None:
    _many_at_once(f"sqlite:///{tmp_path / 'chatops.db'}", kind)


def test_the_bot_and_the_command_line_read_each_others_answers(tmp_path: Path) -> None:
    """One data folder, two ways in: what the bot kept, `chatops analyze` reads (without the
    database layer), and the other way round; and the stdlib one opens only a current schema."""
    path = tmp_path / "chatops.db"
    url = f"sqlite:///{path}"
    assert not current(path)
    upgrade(url)
    assert current(path)
    engine = make_engine(url)
    try:
        bot = AnswerCache(engine, max_bytes=10_000_000, max_age_days=30)
        cli = SqliteAnswers(path, max_bytes=10_000_000, max_age_days=30)
        bot.put("from-bot", "bandit", "b")
        cli.put("from-cli", "secrets", "c")
        assert cli.get_many(["from-bot", "from-cli"]) == {"from-bot": "b", "from-cli": "c"}
        assert bot.get_many(["from-bot", "from-cli"]) == {"from-bot": "b", "from-cli": "c"}
        assert bot.get("from-cli") == "c" and cli.get("from-bot") == "b"
        assert bot.stats() == cli.stats() == (2, 2)
        # Timestamps the other wrote are read as the same instants: nothing looks expired.
        assert bot.prune() == 0 and cli.prune() == 0
        with session_scope(engine) as session:
            row = session.get(AnswerRow, "from-cli")
            assert row is not None and abs(utcnow() - row.used_at) < timedelta(minutes=5)
    finally:
        engine.dispose()


@needs_postgres
def test_the_store_reads_and_keeps_many_answers_at_once_on_postgres() -> None:
    """On PostgreSQL two workers can insert at once: one whose batch meets a key another
    worker kept meanwhile keeps the rest of its batch, and the other's answer stays."""
    import psycopg

    with fresh_postgres() as url:
        _many_at_once(url)
        engine = make_engine(url)
        cache = AnswerCache(engine, max_bytes=10_000_000, max_age_days=30)
        raced: list[str] = []

        def another_worker(conn, cursor, statement, *rest):  # type: ignore[no-untyped-def]
            if statement.startswith("INSERT INTO answers") and not raced:
                raced.append(statement)
                with psycopg.connect(url, autocommit=True) as other:
                    other.execute(
                        "INSERT INTO answers (key, kind, value, size, created_at, used_at) "
                        "SELECT 'k9000', kind, 'theirs', size, created_at, used_at "
                        "FROM answers WHERE key = 'k1'"
                    )

        event.listen(engine, "before_cursor_execute", another_worker)
        try:
            cache.put_many([("k9000", "bandit", "mine"), ("k9001", "bandit", "also mine")])
        finally:
            event.remove(engine, "before_cursor_execute", another_worker)
            engine.dispose()
        assert raced
        reader = make_engine(url)
        try:
            kept = AnswerCache(reader, max_bytes=1, max_age_days=1).get_many(["k9000", "k9001"])
        finally:
            reader.dispose()
        assert kept == {"k9000": "theirs", "k9001": "also mine"}


@pytest.mark.slow
def test_the_command_line_reuses_answers_from_the_data_folder_unless_told_not_to(
    tmp_path: Path, branch: RepoBuilder, fake: FakeAnthropic
) -> None:
    """A CI job that re-runs on the same commit pays nothing; `--no-cache` asks again."""
    env = clean_env(**model_env(fake), CHATOPS_DATA_DIR=str(tmp_path / "data"))

    def chatops(*extra: str) -> tuple[dict[str, Any], list[Recorded]]:
        before = len(fake.requests)
        done = subprocess.run(
            [sys.executable, "-m", "bot", "analyze", "branch", "feature/prices"]
            + ["--repo", str(branch.root), "--format", "json", *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), fake.requests[before:]

    first, sent = chatops()
    assert reviewed_files(sent) == sorted(FILES)
    second, again = chatops()
    assert again == []
    assert second["reuse"]["units_sent"] == 0 and second["usage"]["cost_usd"] == 0
    assert {f["fingerprint"] for f in second["findings"]} == {
        f["fingerprint"] for f in first["findings"]
    }
    _, asked = chatops("--no-cache")
    assert reviewed_files(asked) == sorted(FILES)


def test_the_analyzers_scan_only_new_content_and_the_store_never_holds_a_secret(
    repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline too: bandit's and detect-secrets' answers are kept per file by content. A re-run
    at the same head scans nothing, a push scans the changed file, and what is kept about a
    secret is where it is in its line, never the secret."""
    from agents.analyzers import secrets_scan, security

    key = "AKIA4HJXZQ2WBNVGL7PK"
    password = "hunter2-prod-Xq81"
    repo.branch("feature/keys")
    repo.commit(
        {
            "deploy/prod.env": f'AWS_ACCESS_KEY_ID="{key}"\n',
            "app/run.py": "def f(x):\n    return eval(x)\n",
            "app/config.py": f'DB_PASSWORD = "{password}"\n',  # bandit B105 quotes it
        }
    )
    repo.checkout("main")
    scanned: list[list[str]] = []
    real_scan = secrets_scan.scan_diffs
    monkeypatch.setattr(
        secrets_scan,
        "scan_diffs",
        lambda diffs, first=0: scanned.append([n for n, _ in diffs]) or real_scan(diffs, first),
    )
    read: list[list[str]] = []
    real_run = security._run
    monkeypatch.setattr(
        security, "_run", lambda ws, paths: read.append(list(paths)) or real_run(ws, paths)
    )
    kept = MemoryAnswers()

    def found() -> set[tuple[str | None, str, int | None, str]]:
        report = analyze_branch(repo.root, "feature/keys", kept=kept)
        assert not report.coverage.not_run
        return {(f.file, f.rule, f.start_line, f.title) for f in report.findings}

    first = found()
    assert ("deploy/prod.env", "AWS Access Key", 1, "Possible AWS Access Key added") in first
    # bandit quoted the password (B105): kept as where it is in the file, not as itself.
    assert any(kind == "bandit" and '"value_at"' in v for kind, v in kept.entries.values())
    assert len(scanned) == 1 and read == [["app/config.py", "app/run.py"]]
    assert found() == first and len(scanned) == 1 and len(read) == 1
    assert all(key not in value and password not in value for _, value in kept.entries.values())

    push_files = {"app/run.py": "def f(x):\n    return eval(x) + 2\n"}
    repo.checkout("feature/keys")
    repo.commit(push_files)
    repo.checkout("main")
    assert found() == first  # app/config.py's finding, from what was kept, says the same
    assert read[-1] == ["app/run.py"] and len(scanned[-1]) == 1  # the changed file only
    assert all(password not in value for _, value in kept.entries.values())


def test_the_same_question_gets_the_same_report_said_to_be_reused_never_a_partial_one(
    repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job re-run on the same commit: nothing the report depends on changed (the commits,
    this code, the settings, the learnings), so the earlier complete report is given again
    with a new run id, saying whose it is. A partial report is never given again."""
    from agents.analyzers import security
    from agents.learnings import Learning, Learnings

    repo.branch("feature/same")
    repo.commit({"app/run.py": "import os\n\n\ndef f(x):\n    return eval(x)\n"})
    repo.checkout("main")
    kept = MemoryAnswers()
    real = security._run

    def broken(workspace, paths):  # type: ignore[no-untyped-def]
        raise RuntimeError("bandit failed: internal error")

    monkeypatch.setattr(security, "_run", broken)
    partial = analyze_branch(repo.root, "feature/same", kept=kept)
    assert partial.coverage.not_run
    monkeypatch.setattr(security, "_run", real)
    first = analyze_branch(repo.root, "feature/same", kept=kept)
    assert first.reuse.report_of is None and not first.coverage.not_run  # analyzed again

    ran: list[str] = []
    monkeypatch.setattr(security, "_run", lambda ws, paths: ran.append("bandit") or real(ws, paths))
    again = analyze_branch(repo.root, "feature/same", kept=kept)
    assert again.reuse.report_of == first.run_id and again.run_id != first.run_id
    assert [f.fingerprint for f in again.findings] == [f.fingerprint for f in first.findings]
    assert f"since run {first.run_id}" in again.summary and again.usage.cost_usd == 0

    taught = Learnings(learnings=[Learning("L1", "code_review", "x", "lint", "app/*")])
    other = analyze_branch(repo.root, "feature/same", kept=kept, learnings=taught)
    assert other.reuse.report_of is None  # the learnings are part of the question
    repo.checkout("feature/same")
    repo.commit({"README.md": "more\n"})
    repo.checkout("main")
    moved = analyze_branch(repo.root, "feature/same", kept=kept)
    assert moved.reuse.report_of is None and ran == []  # a new head; bandit's files unchanged


@pytest.mark.slow
def test_a_store_the_command_line_cannot_open_is_said_and_the_analysis_goes_on(
    branch: RepoBuilder,
) -> None:
    """Kept answers are a saving, never a reason to fail: with the store unreachable, stderr
    says nothing is reused and the report is whole."""
    env = clean_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "analyze", "branch", "feature/prices"]
        + ["--repo", str(branch.root), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "earlier answers are not reused" in done.stderr
    assert "everything is analyzed again" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["coverage"]["not_run"] == []


def test_a_kept_bandit_answer_gives_back_what_bandit_said_but_never_holds_the_value() -> None:
    from agents.analyzers.security import _restored, _without_secret

    text = 'import os\nDB_PASSWORD = "hunter2-prod-Xq81"\n'
    said = {
        "test_id": "B105",
        "issue_text": "Possible hardcoded password: 'hunter2-prod-Xq81'",
        "code": '2 DB_PASSWORD = "hunter2-prod-Xq81"\n',
        "line_number": 2,
    }
    kept = _without_secret(said, text)
    assert kept is not None and "hunter2" not in json.dumps(kept)
    assert _restored(kept, text) == {k: v for k, v in said.items() if k != "code"}
    # A value bandit quotes as the file does not spell it: that file's answer is not kept.
    assert (
        _without_secret({**said, "issue_text": "Possible hardcoded password: 'x\\ny'"}, text)
        is None
    )
    other = {"test_id": "B307", "issue_text": "Use of eval", "code": "eval(x)"}
    assert _without_secret(other, text) == {"test_id": "B307", "issue_text": "Use of eval"}
