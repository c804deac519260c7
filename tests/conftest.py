from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.gitrepo import RepoBuilder

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
