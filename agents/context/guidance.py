"""The team's guidance files, read from the base side of the diff (what was already reviewed),
never from the branch under review: a branch cannot rewrite the rules it is judged by."""

from __future__ import annotations

from agents.context.git import DiffContext

GUIDANCE_FILES = ("AGENTS.md", "CLAUDE.md", "CONTRIBUTING.md", ".github/CONTRIBUTING.md")
MAX_CHARS_PER_FILE = 4_000
MAX_CHARS = 8_000


def read_guidance(diff: DiffContext) -> str:
    """The guidance files at the merge-base, each capped, the caps said in the text."""
    blobs = diff.repo.read_objects(f"{diff.base_sha}:{name}" for name in GUIDANCE_FILES)
    parts: list[str] = []
    used = 0
    for name in GUIDANCE_FILES:
        data = blobs.get(f"{diff.base_sha}:{name}")
        if not data:
            continue
        text = data.decode("utf-8", "replace")
        room = min(MAX_CHARS_PER_FILE, MAX_CHARS - used)
        if room <= 0:
            parts.append(
                f"[{name} left out: the guidance cap of {MAX_CHARS} characters is reached]"
            )
            continue
        if len(text) > room:
            text = text[:room] + f"\n[{name} truncated at {room} of {len(text)} characters]"
        used += min(len(text), room)
        parts.append(f"### {name}\n\n{text}")
    return "\n\n".join(parts)
