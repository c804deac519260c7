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


# --- the retirement keeps the right side, and claims only what it rewrote ------------------

VARIANT_SETTINGS = FlagSettings(
    calls=("flags.is_on", "flags.variant"), files=("config/flags.yaml",)
)
VARIANTS = (
    "from myapp import flags\n\n\n"
    "def pick():\n"
    '    if flags.variant("new_checkout") == "v2":\n'
    '        return "V2"\n'
    '    return "V1"\n\n\n'
    "def other():\n"
    '    if flags.variant("new_checkout") != "off":\n'
    '        return "ON"\n'
    "    else:\n"
    '        return "OFF"\n'
)


@pytest.mark.parametrize("keep", [True, False])
def test_retire_lists_a_comparison_with_another_value_and_rewrites_on_off(
    repo: RepoBuilder, keep: bool
) -> None:
    repo.commit({"myapp/pick.py": VARIANTS})
    git = GitRepo.open(repo.root)
    plan = plan_retirement(git, repo.head(), "new_checkout", keep, VARIANT_SETTINGS)
    assert plan.rewritten == 1
    assert [(m.file, m.line) for m in plan.manual] == [("myapp/pick.py", 5)]
    assert "v2" in plan.manual[0].why and "not on or off" in plan.manual[0].why
    subprocess.run(["git", "apply"], cwd=repo.root, input=plan.patch.encode(), check=True)
    text = (repo.root / "myapp/pick.py").read_text()
    # The "v2" comparison is untouched, whichever side is kept.
    assert 'if flags.variant("new_checkout") == "v2":\n        return "V2"\n' in text
    assert ('return "ON"' in text) is keep and ('return "OFF"' in text) is not keep
    assert 'flags.variant("new_checkout") != "off"' not in text


ONE_LINE = (
    "from myapp import flags\n\n\n"
    "def label():\n"
    '    if flags.is_on("new_checkout", False): return "NEW"\n'
    '    return "OLD"\n\n\n'
    "def other():\n"
    '    if flags.is_on("new_checkout", False):\n'
    '        return "A"\n'
    '    else: return "B"\n'
)


@pytest.mark.parametrize(("keep", "line"), [(True, 5), (False, 10)])
def test_retire_lists_a_kept_side_on_the_if_or_else_line(
    repo: RepoBuilder, keep: bool, line: int
) -> None:
    repo.commit({"myapp/label.py": ONE_LINE})
    git = GitRepo.open(repo.root)
    plan = plan_retirement(git, repo.head(), "new_checkout", keep, SETTINGS)
    assert plan.rewritten == 1
    assert [(m.file, m.line) for m in plan.manual] == [("myapp/label.py", line)]
    subprocess.run(["git", "apply"], cwd=repo.root, input=plan.patch.encode(), check=True)
    text = (repo.root / "myapp/label.py").read_text()
    found = scan(text, "myapp/label.py", SETTINGS)
    assert found is not None
    # Exactly the listed guard still reads the flag; the other one is gone.
    left = [r.line for r in found.reads if r.key == "new_checkout"]
    assert len(left) == 1
    assert ast.parse(text)


NESTED = (
    "from myapp import flags\n\n\n"
    "def f():\n"
    '    if flags.is_on("new_checkout"):\n'
    '        if flags.is_on("new_checkout"):\n'
    "            return 1\n"
    "        return 2\n"
    "    return 3\n"
)


def test_retire_does_not_claim_a_guard_whose_kept_side_still_reads_the_flag(
    repo: RepoBuilder,
) -> None:
    repo.commit({"myapp/nested.py": NESTED})
    plan = plan_retirement(GitRepo.open(repo.root), repo.head(), "new_checkout", True, SETTINGS)
    assert plan.rewritten == 0
    assert "myapp/nested.py" not in plan.files
    assert {m.line for m in plan.manual if m.file == "myapp/nested.py"} == {5, 6}


# --- the retirement says what it did not search ---------------------------------------------


def test_retire_refuses_when_more_files_read_the_flag_than_it_rewrites(
    repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.analyzers.flag_retire as flag_retire
    from agents.roles.feature_flags import retire_report

    monkeypatch.setattr(flag_retire, "MAX_FILES", 2)
    repo.commit({f"myapp/m{n}.py": GUARDED for n in range(3)})
    plan = plan_retirement(GitRepo.open(repo.root), repo.head(), "new_checkout", True, SETTINGS)
    assert plan.patch == ""
    assert "more than 2 files" in plan.problem
    report = retire_report(repo.root, "new_checkout", True, None, run_id="r", settings=SETTINGS)
    assert report.proposals == []
    assert "more than 2 files" in report.summary


def test_retire_lists_files_that_are_not_python_and_name_the_flag(repo: RepoBuilder) -> None:
    repo.commit(
        {
            "myapp/pay.py": GUARDED,
            "web/app.js": 'if (flags.isOn("new_checkout")) { show(); }\n',
            "docs/flags.md": "new_checkout: the new checkout\n",
            "web/other.js": "new_checkout_v2()\n",  # another word: not this flag
        }
    )
    plan = plan_retirement(GitRepo.open(repo.root), repo.head(), "new_checkout", True, SETTINGS)
    assert plan.patch and plan.rewritten == 2
    listed = sorted(m.file for m in plan.manual)
    assert listed == ["docs/flags.md", "myapp/pay.py", "web/app.js"]


def test_the_agent_says_when_it_read_only_some_files_naming_a_flag(
    repo: RepoBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.roles.feature_flags as feature_flags

    monkeypatch.setattr(feature_flags, "MAX_OTHER_FILES", 1)
    repo.commit({f"myapp/m{n}.py": GUARDED for n in range(3)})
    repo.branch("feature/reads")
    repo.commit(
        {"myapp/new.py": 'from myapp import flags\nx = flags.is_on("new_checkout", True)\n'}
    )
    report = analyze_branch(repo.root, "feature/reads", agents=[FeatureFlagsAgent(SETTINGS)])
    assert "only the first 1" in report.summary and "new_checkout" in report.summary


def test_the_agent_says_nothing_about_a_cap_it_did_not_reach(repo: RepoBuilder) -> None:
    repo.branch("feature/reads")
    repo.commit(
        {"myapp/new.py": 'from myapp import flags\nx = flags.is_on("new_checkout", True)\n'}
    )
    report = analyze_branch(repo.root, "feature/reads", agents=[FeatureFlagsAgent(SETTINGS)])
    assert "only the first" not in report.summary


# --- definition files that would take a worker down -----------------------------------------

# Each level is ten aliases of the one before: expanded, 10**6 strings.
LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{','.join(['*' + chr(97 + n)] * 10)}]\n" for n in range(5)
)


def test_a_definition_file_with_aliases_is_unreadable_not_expanded(repo: RepoBuilder) -> None:
    from agents.analyzers.flags import DefinitionError

    assert len(LAUGHS) < 500
    with pytest.raises(DefinitionError, match="alias"):
        parse_definitions(LAUGHS, "flags.yaml")
    # An anchor nobody refers to is harmless and still read.
    assert set(parse_definitions("a: &x 1\nb: 2\n", "flags.yaml")) == {"a", "b"}
    repo.branch("feature/laughs")
    repo.commit({"config/flags.yaml": LAUGHS})
    found = flag_findings(repo, "feature/laughs")
    unreadable = [f for f in found if f.rule == "flag-definitions-unreadable"]
    assert [f.file for f in unreadable] == ["config/flags.yaml"]
    assert "alias" in unreadable[0].title
    plan = plan_retirement(GitRepo.open(repo.root), repo.head(), "a", True, SETTINGS)
    assert any(m.file == "config/flags.yaml" and "alias" in m.why for m in plan.manual)


def test_a_definition_file_larger_than_the_cap_is_not_read() -> None:
    from agents.analyzers.flags import MAX_DEFINITION_BYTES, DefinitionError

    big = "a: true\n" + "#" * MAX_DEFINITION_BYTES + "\n"
    with pytest.raises(DefinitionError, match="larger than"):
        parse_definitions(big, "flags.yaml")
    with pytest.raises(DefinitionError, match="larger than"):
        parse_definitions('{"a": true, "pad": "' + "x" * MAX_DEFINITION_BYTES + '"}', "f.json")


def test_file_history_never_runs_the_repositorys_diff_converters(tmp_path: Path) -> None:
    repo = RepoBuilder(tmp_path / "conv")
    marker = tmp_path / "converter-ran"
    script = tmp_path / "conv.sh"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\ncat "$1"\n')
    script.chmod(0o755)
    repo.git("config", "diff.conv.textconv", str(script))
    repo.git("config", "diff.conv.command", str(script))
    repo.commit({".gitattributes": "*.yaml diff=conv\n", "config/flags.yaml": "a: true\n"})
    repo.commit({"config/flags.yaml": "a: false\n"})
    history = GitRepo.open(repo.root).file_history(repo.head(), "config/flags.yaml", 10)
    assert len(history) == 2 and "+a: false" in history[0][2]
    assert not marker.exists()


def test_retire_counts_lines_as_python_does_past_a_form_feed(repo: RepoBuilder) -> None:
    # `str.splitlines` breaks at a form feed, Python does not: the wrong lines would be cut.
    repo.commit({"myapp/pay.py": GUARDED.replace("\n\n\ndef other", "\n\n\x0c\ndef other")})
    plan = plan_retirement(GitRepo.open(repo.root), repo.head(), "new_checkout", True, SETTINGS)
    assert plan.rewritten == 2
    subprocess.run(["git", "apply"], cwd=repo.root, input=plan.patch.encode(), check=True)
    text = (repo.root / "myapp/pay.py").read_text()
    assert "def other():\n    enabled =" in text and "\x0c\n" in text
