"""The feature-flag agent on small real repositories: every finding kind, no noise without
flags, each SDK's call shape, in-house helpers, YAML/JSON/TOML definitions, and the retire
patch."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from agents.analyzers.flag_retire import plan_retirement
from agents.analyzers.flags import FlagSettings, parse_definitions, scan
from agents.context.git import GitRepo
from agents.pipeline import analyze_branch
from agents.report import Finding
from agents.roles.feature_flags import AGENT, FeatureFlagsAgent
from tests.support.gitrepo import RepoBuilder

SETTINGS = FlagSettings(calls=("flags.is_on", "feature_enabled"), files=("config/flags.yaml",))

FLAGS_YAML = "new_checkout:\n  default: false\n  owner: pay\nold_banner: true\n"
APP = (
    "from myapp import flags\n\n\n"
    "def banner():\n"
    '    if flags.is_on("old_banner", True):\n'
    '        return "banner"\n'
    '    return ""\n'
)


def flag_findings(
    repo: RepoBuilder, branch: str, settings: FlagSettings = SETTINGS
) -> list[Finding]:
    report = analyze_branch(repo.root, branch, agents=[FeatureFlagsAgent(settings)])
    return [f for f in report.findings if f.agent == AGENT]


def rules(findings: list[Finding]) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for f in findings:
        out.setdefault(f.rule, set()).add(f.flag)
    return out


@pytest.fixture
def repo(tmp_path: Path) -> RepoBuilder:
    builder = RepoBuilder(tmp_path / "repo")
    builder.commit({"config/flags.yaml": FLAGS_YAML, "myapp/app.py": APP, "README.md": "x\n"})
    return builder


def test_added_flag_with_its_default_and_one_without(repo: RepoBuilder) -> None:
    repo.branch("feature/add")
    repo.commit({"config/flags.yaml": FLAGS_YAML + "dark_mode:\n  default: true\nno_default: {}\n"})
    found = flag_findings(repo, "feature/add")
    by_rule = rules(found)
    assert by_rule["flag-added"] == {"dark_mode"}
    assert by_rule["flag-no-default"] == {"no_default"}
    added = next(f for f in found if f.rule == "flag-added")
    assert "default on" in added.title and added.file == "config/flags.yaml"
    assert added.start_line == 5


def test_removed_flag_still_read_is_a_dangling_reference(repo: RepoBuilder) -> None:
    repo.branch("feature/remove")
    repo.commit({"config/flags.yaml": "new_checkout:\n  default: false\n  owner: pay\n"})
    found = flag_findings(repo, "feature/remove")
    by_rule = rules(found)
    assert by_rule["flag-removed"] == {"old_banner"}
    dangling = next(f for f in found if f.rule == "flag-undefined")
    assert dangling.flag == "old_banner"
    assert (dangling.file, dangling.start_line) == ("myapp/app.py", 5)
    assert dangling.severity.value == "high"


def test_renamed_flag(repo: RepoBuilder) -> None:
    repo.branch("feature/rename")
    repo.commit({"config/flags.yaml": FLAGS_YAML.replace("new_checkout", "checkout_v2")})
    found = flag_findings(repo, "feature/rename")
    by_rule = rules(found)
    assert by_rule["flag-renamed"] == {"checkout_v2"}
    assert "flag-added" not in by_rule and "flag-removed" not in by_rule


def test_new_read_of_an_undefined_key_and_different_defaults(repo: RepoBuilder) -> None:
    repo.branch("feature/reads")
    repo.commit(
        {
            "myapp/other.py": "from myapp import flags\n\n\n"
            "def show():\n"
            '    return flags.is_on("old_banner", False)\n\n\n'
            "def typo():\n"
            '    return flags.is_on("old_baner", False)\n'
        }
    )
    found = flag_findings(repo, "feature/reads")
    by_rule = rules(found)
    assert by_rule["flag-default-mismatch"] == {"old_banner"}
    mismatch = next(f for f in found if f.rule == "flag-default-mismatch")
    assert "myapp/app.py:5 (True)" in mismatch.detail
    assert by_rule["flag-undefined"] == {"old_baner"}


def test_new_guarded_branch_without_a_test_and_with_one(repo: RepoBuilder) -> None:
    guarded = (
        "from myapp import flags\n\n\n"
        "def pay():\n"
        '    if flags.is_on("new_checkout", False):\n'
        '        return "new"\n'
        '    return "old"\n'
    )
    repo.branch("feature/guard")
    repo.commit({"myapp/pay.py": guarded})
    assert rules(flag_findings(repo, "feature/guard"))["flag-untested-branch"] == {"new_checkout"}
    repo.commit({"tests/test_pay.py": 'def test_pay():\n    assert "new_checkout"\n'})
    assert "flag-untested-branch" not in rules(flag_findings(repo, "feature/guard"))


def _commit_at(repo: RepoBuilder, files: dict[str, str], when: str) -> None:
    repo.write(files)
    repo.git("add", "-A")
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    subprocess.run(["git", "commit", "-q", "-m", "dated"], cwd=repo.root, check=True, env=env)


def test_stale_flag_the_branch_touches(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "stale")
    _commit_at(
        repo, {"config/flags.yaml": FLAGS_YAML, "myapp/app.py": "x = 1\n"}, "2020-01-01T00:00:00"
    )
    _commit_at(repo, {"README.md": "later\n"}, "2021-01-01T00:00:00")
    repo.branch("feature/uses-old")
    _commit_at(repo, {"myapp/app.py": APP}, "2021-01-02T00:00:00")
    found = flag_findings(repo, "feature/uses-old")
    stale = [f for f in found if f.rule == "flag-stale"]
    assert [f.flag for f in stale] == ["old_banner"]
    assert "367 days" in stale[0].title
    fresh = FlagSettings(calls=SETTINGS.calls, files=SETTINGS.files, stale_days=400)
    assert not [f for f in flag_findings(repo, "feature/uses-old", fresh) if f.rule == "flag-stale"]


def test_a_change_without_flags_has_no_finding(repo: RepoBuilder) -> None:
    repo.branch("feature/plain")
    repo.commit(
        {
            "myapp/util.py": "def is_on(x):\n    return x.get_value('a', 1)\n",
            "README.md": "more\n",
        }
    )
    report = analyze_branch(repo.root, "feature/plain", agents=[FeatureFlagsAgent(SETTINGS)])
    assert report.findings == []
    # The default pipeline runs the agent too, and it adds nothing here.
    full = analyze_branch(repo.root, "feature/plain")
    assert "feature_flags" in [a.name for a in full.agents]
    assert [f for f in full.findings if f.agent == AGENT] == []


@pytest.mark.parametrize(
    ("source", "sdk", "key", "default"),
    [
        ("client.get_boolean_value('k1', False)", "openfeature", "k1", "False"),
        ("client.get_string_value(flag_key='k1', default_value='x')", "openfeature", "k1", "'x'"),
        (
            "import ldclient\nldclient.get().variation('k1', ctx, False)",
            "launchdarkly",
            "k1",
            "False",
        ),
        (
            "from UnleashClient import UnleashClient\nc.is_enabled('k1', ctx, fallback_function=f)",
            "unleash",
            "k1",
            "f",
        ),
        ("flags.is_feature_enabled('k1')", "flagsmith", "k1", None),
        ("from growthbook import GrowthBook\ngb.is_on('k1')", "growthbook", "k1", None),
        (
            "from growthbook import GrowthBook\ngb.get_feature_value('k1', 'blue')",
            "growthbook",
            "k1",
            "'blue'",
        ),
        ("split.get_treatment('CUSTOMER_ID', 'k1')", "split", "k1", None),
        ("import configcatclient\nclient.get_value('k1', False)", "configcat", "k1", "False"),
        ("feature_enabled('k1', True)", "in-house", "k1", "True"),
    ],
)
def test_each_sdk_call_shape(source: str, sdk: str, key: str, default: str | None) -> None:
    found = scan(source + "\n", "app.py", SETTINGS)
    assert found is not None
    assert [(r.sdk, r.key, r.default) for r in found.reads] == [(sdk, key, default)]


def test_generic_method_names_need_the_sdk_imported() -> None:
    found = scan("cache.get_value('k1', 1)\nuser.is_enabled('admin')\n", "app.py", SETTINGS)
    assert found is not None and found.reads == []
    assert scan("flags.is_on(name)\n", "app.py", SETTINGS).reads == []  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("flags.yaml", "flags:\n  a: true\n  b:\n    default: 3\n"),
        ("flags.json", '{"a": true, "b": {"defaultValue": 3}}'),
        ("flags.toml", "a = true\n[b]\ndefault = 3\n"),
    ],
)
def test_definition_formats(path: str, text: str) -> None:
    found = parse_definitions(text, path)
    assert {k: v.default for k, v in found.items()} == {"a": True, "b": 3}


GUARDED = (
    "from myapp import flags\n\n\n"
    "def pay(order):\n"
    '    if flags.is_on("new_checkout", False):\n'
    "        total = order.total * 2\n"
    "        return total\n"
    "    else:\n"
    "        return order.total\n\n\n"
    "def other():\n"
    '    if not flags.is_on("new_checkout"):\n'
    '        print("legacy")\n'
    '    enabled = flags.is_on("new_checkout", False)\n'
    "    return enabled\n"
)


def test_retire_rewrites_guards_lists_the_rest_and_parses(repo: RepoBuilder) -> None:
    repo.commit({"myapp/pay.py": GUARDED})
    git = GitRepo.open(repo.root)
    plan = plan_retirement(git, repo.head(), "new_checkout", True, SETTINGS)
    assert plan.problem == ""
    assert plan.rewritten == 2
    assert sorted(plan.files) == ["config/flags.yaml", "myapp/pay.py"]
    assert [(m.file, m.line) for m in plan.manual] == [("myapp/pay.py", 15)]
    ok, why = git.apply_check(repo.head(), plan.patch)
    assert ok, why
    # Applied, the file parses and has the kept side only; the definition is gone.
    subprocess.run(["git", "apply"], cwd=repo.root, input=plan.patch.encode(), check=True)
    text = (repo.root / "myapp/pay.py").read_text()
    ast.parse(text)
    assert "total = order.total * 2" in text and "return order.total\n" not in text
    assert 'print("legacy")' not in text
    remaining = parse_definitions((repo.root / "config/flags.yaml").read_text(), "flags.yaml")
    assert set(remaining) == {"old_banner"}


def test_retire_keeps_the_default_side_when_not_told(repo: RepoBuilder) -> None:
    repo.commit({"myapp/pay.py": GUARDED})
    plan = plan_retirement(GitRepo.open(repo.root), repo.head(), "new_checkout", None, SETTINGS)
    assert plan.keep is False
    assert "+        return order.total" not in plan.patch  # dedented to the if's place
    assert "+    return order.total" in plan.patch


def test_retire_goes_through_the_approval_gate_onto_a_new_branch(
    repo: RepoBuilder, tmp_path: Path
) -> None:
    from bot.config import ApprovalsConfig, FlagsConfig, PolicyConfig, RepoConfig
    from bot.core.actor import Actor
    from bot.core.commands import parse
    from bot.store.db import upgrade
    from tests.test_approvals import APPROVER, REQUESTER, TEAM, Groups, World

    repo.commit({"myapp/pay.py": GUARDED})
    main_before = repo.head("main")
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    upgrade(url)
    flags = FlagsConfig(calls=list(SETTINGS.calls), files=list(SETTINGS.files))
    policy = PolicyConfig(
        repos={"shop": RepoConfig(path=repo.root)},
        approvals=ApprovalsConfig(approvers=[APPROVER]),
        flags=flags,
    )
    world = World(repo, url, policy, Groups(), tmp_path / "data")
    requester = Actor(user=REQUESTER, surface="slack", team=TEAM)
    [requested] = world.service().carry_out(  # type: ignore[misc]
        requester, parse("flag retire new_checkout in shop keep on")
    )
    run = requested.run
    assert (run.kind, run.target) == ("flag_retire", "new_checkout=on")
    # What the worker does with a run of this kind (bot/worker/executor.py).
    from agents.roles.feature_flags import retire_report

    assert world.runs.claim(run.id, "w", 60)
    report = retire_report(
        repo.root, "new_checkout", True, None, run_id=run.id, settings=flags.settings()
    )
    assert world.runs.finish(run.id, "w", report)
    [proposal] = report.proposals
    assert proposal.kind.value == "branch_patch"
    assert proposal.target == "chore/retire-flag-new_checkout"
    assert [(f.rule, f.file, f.start_line, f.flag) for f in report.findings] == [
        ("flag-retire-manual", "myapp/pay.py", 15, "new_checkout")
    ]
    branches = repo.git("branch", "--list")
    # A stranger, and the requester (four eyes), cannot approve: nothing is written.
    assert not world.decide("USTRANGER", f"{run.id}/P1").ok
    assert not world.decide(REQUESTER, f"{run.id}/P1").ok
    assert repo.git("branch", "--list") == branches
    outcome = world.decide(APPROVER, f"{run.id}/P1")
    assert outcome.ok, outcome.message
    new = repo.head("chore/retire-flag-new_checkout")
    assert repo.git("rev-parse", f"{new}^").strip() == main_before
    assert repo.head("main") == main_before  # the default branch is never written
    applied = repo.git("show", f"{new}:myapp/pay.py")
    compile(applied, "myapp/pay.py", "exec")
    assert "order.total * 2" in applied and 'print("legacy")' not in applied
    assert "new_checkout" not in repo.git("show", f"{new}:config/flags.yaml")
    # Approving again writes nothing more.
    world.decide(APPROVER, f"{run.id}/P1")
    assert repo.head("chore/retire-flag-new_checkout") == new


def test_retire_of_a_branch_that_exists_already_writes_nothing(tmp_path: Path) -> None:
    from bot.writes.git import WriteRequest, apply_proposal

    repo = RepoBuilder(tmp_path / "r")
    base = repo.commit({"a.py": "x = 1\n"})
    repo.git("branch", "chore/retire-flag-x")
    patch = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    from agents.report import sha256_hex

    result = apply_proposal(
        WriteRequest(
            repo=repo.root,
            branch="chore/retire-flag-x",
            kind="patch",
            target="chore/retire-flag-x",
            base_sha=base,
            content=patch,
            content_sha256=sha256_hex(patch),
            title="t",
            approved_by="A",
            requested_by="R",
            run_id="r1",
            create=True,
        )
    )
    assert result.outcome == "failed" and "already exists" in result.detail
    assert repo.head("chore/retire-flag-x") == base


def test_the_digest_has_a_flags_section_and_none_without_flags(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from bot.core.digest import DigestData, flag_digest, sections
    from bot.schedule import Period
    from bot.store.db import make_engine, session_scope, upgrade
    from bot.store.models import FindingRow, ProposalRow, Run
    from bot.store.stats import Stats, Usage

    url = f"sqlite:///{tmp_path / 'd.db'}"
    upgrade(url)
    engine = make_engine(url)
    now = datetime(2025, 3, 3, 9, tzinfo=UTC)
    day = now - timedelta(hours=3)
    stats = Stats(engine)
    assert not flag_digest(stats, now - timedelta(days=1), now).any
    titles = [
        "Flag dark_mode added, default on",
        "Flag old_banner unchanged for 400 days",
        "Flag old_banner unchanged for 401 days",
        "Flag promo unchanged for 120 days",
        "Flag x read here but is not defined in the flag definitions",
    ]
    with session_scope(engine) as session:
        session.add(Run(id="r1", requester="U", surface="shell", repo="shop", target="b"))
        session.flush()
        for n, title in enumerate(titles):
            session.add(
                FindingRow(
                    run_id="r1",
                    repo="shop",
                    fingerprint=f"f{n}",
                    agent=AGENT,
                    source="heuristic",
                    category="feature-flag",
                    severity="low",
                    title=title,
                    created_at=day,
                )
            )
        for pid, status in (("P1", "applied"), ("P2", "proposed")):
            session.add(
                ProposalRow(
                    run_id="r1",
                    pid=pid,
                    kind="branch_patch",
                    agent=AGENT,
                    title=f"Retire flag {'legacy' if pid == 'P1' else 'other'} (keep on): 1",
                    target="chore/retire-flag-legacy",
                    base_sha="0" * 40,
                    content="x",
                    content_sha256="0" * 64,
                    status=status,
                    created_at=day,
                )
            )
    flags = flag_digest(stats, now - timedelta(days=1), now)
    assert flags.added == ["dark_mode (shop)"]
    assert flags.retired == ["legacy"]
    assert flags.stalest == [("old_banner (shop)", 401), ("promo (shop)", 120)]
    assert not flag_digest(stats, now - timedelta(days=3), now - timedelta(days=2)).any
    engine.dispose()
    data = DigestData(
        period=Period(now - timedelta(days=1), now),
        tz=ZoneInfo("UTC"),
        runs={},
        findings={},
        acceptance={},
        previous_acceptance={},
        proposals={},
        usage=Usage(0, 0, 0.0, 0),
        budget_usd=None,
        refused_for_budget=0,
        failure_modes=[],
        slowest=[],
        flags=flags,
    )
    assert dict(sections(data))["Feature flags"] == [
        "Added: dark_mode (shop)",
        "Retired: legacy",
        "Stalest: old_banner (shop) 401 days, promo (shop) 120 days",
    ]
    data.flags = flag_digest(stats, now - timedelta(days=3), now - timedelta(days=2))
    assert "Feature flags" not in dict(sections(data))


def test_with_the_model_the_rollout_risk_is_explained_for_the_flags_found(
    repo: RepoBuilder,
) -> None:
    from typing import Any

    from tests.support.fakes.anthropic_api import FakeAnthropic
    from tests.support.llm_helpers import session_for

    def explain(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "summary": "Removing old_banner while app.py reads it shows the banner to everyone.",
            "flags": [
                {"flag": "old_banner", "rollout_risk": "Falls back to True in app.py."},
                {"flag": "invented", "rollout_risk": "Not in the findings: dropped."},
            ],
        }

    repo.branch("feature/remove")
    repo.commit({"config/flags.yaml": "new_checkout:\n  default: false\n  owner: pay\n"})
    with FakeAnthropic() as fake:
        fake.responders["feature_flags"] = explain
        report = analyze_branch(
            repo.root,
            "feature/remove",
            agents=[FeatureFlagsAgent(SETTINGS)],
            llm=session_for(fake, validate=False),
        )
        asked = [r for r in fake.requests if r.role == "feature_flags" and r.path == "/v1/messages"]
    assert len(asked) == 1 and "flag-undefined" in asked[0].user
    dangling = next(f for f in report.findings if f.rule == "flag-undefined")
    assert "Rollout risk: Falls back to True in app.py." in dangling.detail
    assert "invented" not in report.model_dump_json()
    assert "shows the banner to everyone" in report.summary


def test_a_retirement_run_is_named_for_its_flag_on_every_surface() -> None:
    """Its target keeps the side to keep (`KEY=on`); the messages say what it is for."""
    from bot.core.messages import subject
    from bot.store.models import Run
    from bot.surfaces.slack.blocks import ParentView, parent_text

    kept = Run(id="r1", requester="U1", surface="slack", repo="shop", target="NEW_UI=on")
    kept.kind = "flag_retire"
    either = Run(id="r2", requester="U1", surface="slack", repo="shop", target="NEW_UI")
    either.kind = "flag_retire"
    branch = Run(id="r3", requester="U1", surface="slack", repo="shop", target="feature/x=y")
    assert subject(kept) == "flag NEW_UI (to retire, keeping it on)"
    assert subject(either) == "flag NEW_UI (to retire)"
    assert subject(branch) == "feature/x=y"  # a branch is shown as it is named
    view = ParentView(kept.id, kept.requester, subject(kept), kept.repo, "queued", [])
    assert parent_text(view) == "Analyzing flag NEW_UI (to retire, keeping it on) in shop: queued"
