"""The command grammar every surface shares, and the policy file's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_policy
from bot.core.commands import (
    USAGE,
    AnalyzeBranch,
    Approve,
    CommandError,
    Help,
    Reject,
    Status,
    Stop,
    help_text,
    parse,
)
from tests.support.gitrepo import RepoBuilder


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/agent analyze branch feature/x", AnalyzeBranch("feature/x")),
        ("analyze branch feature/x in shop", AnalyzeBranch("feature/x", repo="shop")),
        (
            "/agent analyze branch fix/PAY-1 against develop in shop",
            AnalyzeBranch("fix/PAY-1", repo="shop", base="develop"),
        ),
        ("/agent status", Status()),
        ("status 3f2a9c1b7d4e", Status("3f2a9c1b7d4e")),
        ("stop 3f2a9c1b7d4e", Stop("3f2a9c1b7d4e")),
        ("approve 3f2a/P1", Approve("3f2a/P1")),
        ('reject 3f2a/P1 "not this way" please', Reject("3f2a/P1", "not this way please")),
        ("/agent", Help()),
        ("help", Help()),
    ],
)
def test_commands_parse(text: str, command: object) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "message", "usage"),
    [
        ("analyze feature/x", "Say what to analyze.", USAGE["analyze"]),
        ("analyze branch feature/x in", "'in' needs a value.", USAGE["analyze"]),
        ("analyze branch feature/x on shop", "Unexpected 'on'.", USAGE["analyze"]),
        ("analyze branch a in x in y", "Unexpected 'in'.", USAGE["analyze"]),
        ("stop", "stop needs the run id.", USAGE["stop"]),
        ("status a b", "status takes at most one run id.", USAGE["status"]),
        ("deploy prod", "Unknown command 'deploy'.", "help lists the commands"),
        (
            'reject P1 "unclosed',
            "Cannot read that command (No closing quotation).",
            "close your quotes",
        ),
    ],
)
def test_bad_commands_say_what_was_expected(text: str, message: str, usage: str) -> None:
    with pytest.raises(CommandError) as error:
        parse(text)
    assert error.value.message == message
    assert error.value.usage == usage


def test_help_lists_every_command_with_an_example() -> None:
    text = help_text()
    for verb in ("analyze", "status", "stop", "approve", "reject", "help"):
        assert f"/agent {verb}" in text
    assert text.count("e.g.") >= 5


def test_no_file_means_the_working_directory_and_no_approvers(tmp_path: Path) -> None:
    policy = load_policy(None, cwd=tmp_path)
    [(name, repo)] = policy.repos.items()
    assert name == tmp_path.name and repo.path == tmp_path.resolve()
    assert policy.approvals.approvers == []


def test_the_design_example_loads(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    file = tmp_path / "chatops.toml"
    file.write_text(
        '[repos.shop]\npath = "shop"\nbase = "main"\nmode = "feature_branches"\n'
        'writable = ["feature/*"]\nprotected = ["release/*"]\n\n'
        '[repos.web]\nurl = "git@example.invalid:org/web.git"\n\n'
        '[approvals]\napprovers = ["U012ABCDEF", "S0123GROUP"]\nfour_eyes = true\nttl = "4h"\n\n'
        '[digest]\nchannel = "C0123CHAN"\ncron = "0 9 * * 1-5"\ntimezone = "Europe/Stockholm"\n'
    )
    policy = load_policy(file, cwd=tmp_path)
    assert policy.repos["shop"].path == (tmp_path / "shop").resolve()
    assert policy.repos["web"].url == "git@example.invalid:org/web.git"
    assert policy.approvals.ttl_seconds == 4 * 3600
    with pytest.raises(ConfigError, match="Several repositories are configured"):
        policy.repo(None)
    with pytest.raises(ConfigError, match="Unknown repository 'nope'. Known: shop, web."):
        policy.repo("nope")


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('[repos.shop]\nmode = "yolo"\npath = "."\n', "repos.shop.mode: Input should be"),
        ('[repos.shop]\npath = "."\nwritable = "feature/*"\n', "repos.shop.writable"),
        ("[repos.shop]\n", "repos.shop: Value error, give exactly one of path"),
        ('[repos.shop]\npath = "."\n[approvals]\nttl = "soon"\n', "approvals.ttl"),
        (
            '[repos.shop]\npath = "."\n[approvals]\napprover = ["U1"]\n',
            "approvals.approver: Extra inputs are not permitted",
        ),
        ('[repos.shop]\npath = "missing"\n', "repos.shop.path:"),
        ("[repos.shop\n", "not valid TOML"),
        ("", "repos: configure at least one repository"),
    ],
)
def test_invalid_policy_names_file_key_and_reason(tmp_path: Path, content: str, error: str) -> None:
    file = tmp_path / "chatops.toml"
    file.write_text(content)
    with pytest.raises(ConfigError) as raised:
        load_policy(file, cwd=tmp_path)
    assert str(raised.value).startswith(f"{file}: ")
    assert error in str(raised.value)


def test_a_named_policy_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.toml", cwd=tmp_path)


def test_a_url_repository_is_cloned_then_fetched_before_each_run(
    planted_repo: RepoBuilder, tmp_path: Path
) -> None:
    from agents.pipeline import analyze_branch
    from bot.config import RepoConfig
    from bot.repos import RepoResolver

    resolver = RepoResolver(tmp_path / "data")
    config = RepoConfig(url=str(planted_repo.root))
    path = resolver.prepare("shop", config)
    assert path == tmp_path / "data" / "repos" / "shop"
    first = analyze_branch(path, "feature/planted")
    planted_repo.checkout("feature/planted")
    planted_repo.commit({"shop/late.py": "def late(x):\n    return eval(x)\n"}, "later")
    planted_repo.checkout("main")
    second = analyze_branch(resolver.prepare("shop", config), "feature/planted")
    assert second.target.head_sha == planted_repo.head("feature/planted") != first.target.head_sha
    assert any(f.file == "shop/late.py" and f.rule == "B307" for f in second.findings)


def test_every_chat_command_has_one_use_case_in_the_cores_table(
    repo: RepoBuilder, tmp_path: Path
) -> None:
    """Slack and the shell carry out commands through `Service.carry_out`: a command added to
    the grammar without a use case fails here, not in one surface."""
    import typing

    from bot.app import build_app
    from bot.core.actor import Actor, UserError
    from bot.core.commands import Command, Help, Status
    from bot.settings import Settings

    app = build_app(Settings(chatops_data_dir=tmp_path / "data"), repo_override=repo.root)
    try:
        commands = set(typing.get_args(Command)) - {Help}
        assert commands and commands <= set(app.service._use_cases)
        assert app.service.carry_out(Actor("ana", "shell"), Status()) == []  # no runs yet
        with pytest.raises(UserError, match="answered by the surface"):
            app.service.carry_out(Actor("ana", "shell"), Help())
    finally:
        app.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("analyse branch x", "Unknown command 'analyse'. Did you mean 'analyze'?"),
        ("stauts", "Unknown command 'stauts'. Did you mean 'status'?"),
        ("folow branch x", "Unknown command 'folow'. Did you mean 'follow' or 'unfollow'?"),
        ("analyze brnch x", "Say what to analyze. Did you mean 'branch'?"),
        ("analyze branch x agianst main", "Unexpected 'agianst'. Did you mean 'against'?"),
        (
            "analyze branch x --base main~3",
            "--base is the command line's; here say `against main~3`.",
        ),
        (
            "analyze branch x --repo ../shop",
            "--repo is the command line's; here say `in REPO`, a configured repository's name.",
        ),
        ("analyze ticket PAY-1 --branch x", "--branch is the command line's; here say `branch x`."),
        ("exti", "Unknown command 'exti'."),  # `exit` is the shell's word, not the grammar's
    ],
)
def test_a_mistyped_command_says_what_was_meant(text: str, message: str) -> None:
    with pytest.raises(CommandError) as error:
        parse(text)
    assert error.value.message == message


def test_a_surface_s_own_words_are_suggested_too() -> None:
    with pytest.raises(CommandError) as error:
        parse("exti", also=("exit", "clear"))
    assert error.value.message == "Unknown command 'exti'. Did you mean 'exit'?"


def test_a_base_going_back_n_commits_parses_in_chat_as_on_the_command_line() -> None:
    assert parse("analyze branch main against main~3") == AnalyzeBranch("main", base="main~3")


def _cli_hints() -> list[str]:
    """Every literal hint an `AnalysisInputError` raised by the analysis carries: the command
    line's words. (`chatops eval history`'s own are only ever shown there.)"""
    import ast

    hints = []
    for path in sorted((Path(__file__).parents[1] / "agents").rglob("*.py")):
        if path.name == "evaluation.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call) and getattr(node.func, "id", "") == "AnalysisInputError"
            ):
                continue
            for arg in node.args[1:2]:
                parts = [arg, *getattr(arg, "values", [])]  # a literal, or an f-string's parts
                for part in parts:
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        hints.append(part.value)
                if isinstance(arg, ast.IfExp | ast.BinOp):
                    hints += [
                        n.value
                        for n in ast.walk(arg)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    ]
    return hints


def test_every_hint_of_the_analysis_reads_in_the_chat_grammar() -> None:
    """Slack and the shell never tell a person to type an option they do not accept, and a
    hint translated mid-sentence stays one sentence ("or add", not "or Add")."""
    from bot.core.chat_errors import chat_hint

    hints = _cli_hints()
    assert sum("--base" in h for h in hints) >= 4  # the scan finds them
    for hint in hints:
        said = chat_hint(hint)
        assert "--" not in said, (hint, said)
        assert ", or Add" not in said and ", or Name" not in said, said
    assert chat_hint(
        "Commit to the branch first, or pass `--base BASE`, the branch it was made "
        "from (`--base main~3`: the last 3 commits of main)."
    ) == (
        "Commit to the branch first, or add `against BASE`, the branch it was made from "
        "(`against main~3`: the last 3 commits of main)."
    )
    assert chat_hint("Run it inside a clone, or pass --repo PATH.") == (
        "Run it inside a clone, or name a configured repository with `in REPO`."
    )
