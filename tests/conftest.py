from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import RepoBuilder
from tests.support.hosted import Hosted, hosting

BASE_FILES: dict[str, str | bytes | None] = {
    "README.md": "# shop\n",
    "requirements.txt": "requests==2.32.3\nPyYAML==6.0.2\n",
    "shop/__init__.py": "",
    "shop/cart.py": "def total(prices):\n    return sum(prices)\n",
    "tests/test_cart.py": (
        "from shop.cart import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
    ),
}

# A branch with one of each planted problem the foundation issue names.
PLANTED: dict[str, str | bytes | None] = {
    "requirements.txt": "requests==2.31.0\nPyYAML==6.0.2\n",
    "shop/config.py": 'AWS_ACCESS_KEY_ID = "AKIA4HJXZQ2WBNVGL7PK"\nREGION = "eu-north-1"\n',
    "shop/orders.py": (
        "import subprocess\n"
        "\n"
        "import yaml\n"
        "\n"
        "\n"
        "def apply_discount(expression):\n"
        "    return eval(input(expression))\n"
        "\n"
        "\n"
        "def find_order(cursor, order_id):\n"
        '    cursor.execute(f"SELECT * FROM orders WHERE id = {order_id}")\n'
        "    return cursor.fetchone()\n"
        "\n"
        "\n"
        "def export(name):\n"
        '    subprocess.call(f"tar czf /tmp/{name}.tgz orders", shell=True)\n'
        "\n"
        "\n"
        "def load_rules(text):\n"
        "    return yaml.load(text)\n"
    ),
}


@pytest.fixture
def repo(tmp_path: Path) -> RepoBuilder:
    builder = RepoBuilder(tmp_path / "repo")
    builder.commit(BASE_FILES, "base")
    return builder


@pytest.fixture
def planted_repo(repo: RepoBuilder) -> RepoBuilder:
    repo.branch("feature/planted")
    repo.commit(PLANTED, "planted problems")
    repo.checkout("main")
    return repo


@pytest.fixture
def make_branch(repo: RepoBuilder) -> Callable[..., RepoBuilder]:
    def make(name: str, files: dict[str, str | bytes | None]) -> RepoBuilder:
        repo.branch(name, "main")
        repo.commit(files, f"work on {name}")
        repo.checkout("main")
        return repo

    return make


@pytest.fixture(autouse=True)
def _a_data_folder_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test, and every `chatops` it starts, keeps its store in a folder of its own: the
    command line keeps answers in the data folder, and a test must neither read another test's
    nor write the developer's (`~/.local/share/chatops`)."""
    monkeypatch.setenv("CHATOPS_DATA_DIR", str(tmp_path / "chatops-data"))


@pytest.fixture(autouse=True)
def _python_children_only_in_slow_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast loop (`pytest -m "not slow"`) starts no chatops process (the `chatops`
    command, a worker, a server, a child a test kills on purpose): a test that does is marked
    `slow`, or it fails here saying so. (The analyzers' own processes, ruff and bandit, are
    part of every analysis and are not counted.)"""
    if request.node.get_closest_marker("slow") is not None:
        return
    real = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[bytes], args: object, *rest: object, **kw: object) -> None:
        argv = list(args) if isinstance(args, list | tuple) else [args]
        ours = argv[1:3] == ["-m", "bot"] or argv[1:2] == ["-c"]
        if argv and str(argv[0]) == sys.executable and ours:
            pytest.fail(f"{request.node.nodeid} starts a chatops process: mark it slow")
        real(self, args, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture
def hosted(repo: RepoBuilder, tmp_path: Path) -> Iterator[Hosted]:
    """The planted branch as pull request #7 of org/shop on a fake GitHub (tests.support.hosted)."""
    with hosting(repo, tmp_path, PLANTED) as made:
        yield made
