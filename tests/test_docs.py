"""The docs: the configuration reference is the models', and every link leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.reference import REFERENCE, render, type_name

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_configuration_reference_is_written_from_the_models() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `python -m bot.reference`"
    )


def test_every_setting_in_the_reference_says_what_it_is() -> None:
    """Each setting's type, default and bounds come from its model; a setting with no
    description stops the reference from being written at all."""
    from pydantic.fields import FieldInfo

    from bot import reference

    text = render()
    for key in ("`suppress_after`", "`CHATOPS_ANSWER_CACHE_MB`", "`SLACK_APP_TOKEN`", "`ttl`"):
        assert key in text
    assert "| `mode` | `feature_branches` \\| `read_only` | `feature_branches` |" in text
    assert "| `CHATOPS_WORKERS` | integer (≥ 1, ≤ 64) | `2` |" in text
    assert "the user data directory" in text  # not this machine's own path
    assert str(Path.home()) not in text
    assert type_name(list[str]) == "list of text"
    with pytest.raises(ValueError, match="channel has no description"):
        reference._row("channel", "channel", FieldInfo(default=None))


@pytest.mark.parametrize(
    "doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_every_link_in_the_docs_leads_to_a_file(doc: Path) -> None:
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (doc.parent / target).exists(), f"{doc.name}: {target} does not exist"


def test_the_readme_is_what_a_newcomer_needs_first() -> None:
    """What it is, the two commands, one screen, and links: the rest lives in docs/."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme) < 8_000, "move the details into docs/"
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"the README does not link to docs/{doc.name}"
