"""A small repository with a risky branch, so a new user sees a real report in one command."""

from __future__ import annotations

import tempfile
from pathlib import Path

import git as gitpython

DEMO_BRANCH = "feature/demo-checkout"

_BASE_FILES = {
    "README.md": "# shop\n\nA tiny shop.\n",
    "requirements.txt": "requests==2.32.3\nPyYAML==6.0.2\n",
    "shop/__init__.py": "",
    "shop/cart.py": ("def total(prices):\n    return sum(prices)\n"),
    "tests/test_cart.py": (
        "from shop.cart import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
    ),
}

# Each line here is a problem a reviewer should catch.
_BRANCH_FILES = {
    "requirements.txt": "requests==2.31.0\nPyYAML==6.0.2\nflask\n",
    "shop/checkout.py": (
        "import os\n"
        "import subprocess\n\n"
        "import yaml\n\n"
        'AWS_ACCESS_KEY_ID = "AKIA4HJXZQ2WBNVGL7PK"\n\n\n'
        "def apply_discount(expression):\n"
        "    return eval(expression)\n\n\n"
        "def find_order(cursor, order_id):\n"
        '    cursor.execute(f"SELECT * FROM orders WHERE id = {order_id}")\n'
        "    return cursor.fetchone()\n\n\n"
        "def export(name):\n"
        '    subprocess.call(f"tar czf /tmp/{name}.tgz orders", shell=True)\n\n\n'
        "def load_rules(text):\n"
        "    return yaml.load(text)\n"
    ),
}


def create_demo_repo(path: Path | None = None) -> Path:
    """Create the demo repository at `path` (a new temp folder by default) and return it."""
    root = Path(tempfile.mkdtemp(prefix="chatops-demo-")) if path is None else path
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty.")
    root.mkdir(parents=True, exist_ok=True)
    repo = gitpython.Repo.init(root, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "chatops demo")
        config.set_value("user", "email", "demo@example.invalid")
    _commit(repo, root, _BASE_FILES, "Initial shop")
    repo.create_head(DEMO_BRANCH).checkout()
    _commit(repo, root, _BRANCH_FILES, "Add checkout")
    repo.heads["main"].checkout()
    repo.close()
    return root


def _commit(repo: gitpython.Repo, root: Path, files: dict[str, str], message: str) -> None:
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    repo.index.add(list(files))
    repo.index.commit(message)
