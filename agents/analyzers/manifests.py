"""Dependency manifests: packages added, removed, upgraded, downgraded, or left unpinned.

Reads the manifest at the merge-base and at the branch head and compares declared versions.
Lock files are not read: the manifest says what a human chose.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from agents.context import files as kinds
from agents.context.git import DiffContext
from agents.report import Finding, Severity, Source, fingerprint


@dataclass(frozen=True)
class Dependency:
    name: str
    spec: str  # as written: "==2.31.0", "^18.2.0", "v1.9.1", "" for none
    group: str  # "dependencies", "dev-dependencies", ...


Parser = Callable[[str], dict[tuple[str, str], Dependency]]

_VERSION = re.compile(r"\d+(?:\.\d+)*(?:[-.+]?[0-9A-Za-z]+)*")
_UNPINNED = frozenset({"", "*", "latest", "x", "any"})


def _add(out: dict[tuple[str, str], Dependency], name: str, spec: str, group: str) -> None:
    out[(group, name)] = Dependency(name=name, spec=spec.strip(), group=group)


def parse_requirements(text: str) -> dict[tuple[str, str], Dependency]:
    out: dict[tuple[str, str], Dependency] = {}
    joined = re.sub(r"\\\n", " ", text)  # continuation lines (hash-pinned requirements)
    for raw in joined.splitlines():
        line = re.split(r"\s#", raw, maxsplit=1)[0].strip()
        if not line or line.startswith(("#", "-", "http:", "https:", "git+")):
            continue
        _add_pep508(out, line.split(" --hash", 1)[0], "dependencies")
    return out


def _add_pep508(out: dict[tuple[str, str], Dependency], text: str, group: str) -> None:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return
    _add(out, canonicalize_name(requirement.name), str(requirement.specifier), group)


def parse_pyproject(text: str) -> dict[tuple[str, str], Dependency]:
    data = tomllib.loads(text)
    out: dict[tuple[str, str], Dependency] = {}
    project = data.get("project", {})
    for item in project.get("dependencies", []):
        _add_pep508(out, item, "dependencies")
    for extra, items in project.get("optional-dependencies", {}).items():
        for item in items:
            _add_pep508(out, item, f"optional-dependencies.{extra}")
    poetry = data.get("tool", {}).get("poetry", {})
    _add_table(out, poetry.get("dependencies", {}), "dependencies", skip={"python"})
    for group, table in poetry.get("group", {}).items():
        _add_table(out, table.get("dependencies", {}), f"group.{group}", skip=set())
    return out


def _add_table(
    out: dict[tuple[str, str], Dependency], table: dict[str, Any], group: str, skip: set[str]
) -> None:
    for name, value in table.items():
        if name in skip:
            continue
        if isinstance(value, list):  # Poetry's multiple constraints: the first one's version
            value = value[0] if value and isinstance(value[0], dict) else ""
        if isinstance(value, str):
            spec = value
        else:
            # A workspace, path or git dependency is pinned by other means than a version.
            source = next((k for k in ("workspace", "path", "git") if k in value), "")
            spec = str(value.get("version", source))
        _add(out, name, spec, group)


def parse_package_json(text: str) -> dict[tuple[str, str], Dependency]:
    data = json.loads(text)
    out: dict[tuple[str, str], Dependency] = {}
    groups = ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies")
    for group in groups:
        for name, spec in (data.get(group) or {}).items():
            _add(out, name, str(spec), group)
    return out


def parse_go_mod(text: str) -> dict[tuple[str, str], Dependency]:
    out: dict[tuple[str, str], Dependency] = {}
    in_block = False
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if line.startswith("require ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if line.startswith("require "):
            line = line.removeprefix("require ").strip()
        elif not in_block:
            continue
        fields = line.split()
        if len(fields) >= 2:
            _add(out, fields[0], fields[1], "require")
    return out


def parse_cargo(text: str) -> dict[tuple[str, str], Dependency]:
    data = tomllib.loads(text)
    out: dict[tuple[str, str], Dependency] = {}
    for group in ("dependencies", "dev-dependencies", "build-dependencies"):
        _add_table(out, data.get(group, {}), group, skip=set())
    _add_table(out, data.get("workspace", {}).get("dependencies", {}), "workspace", skip=set())
    return out


def parser_for(path: str) -> Parser | None:
    name = PurePosixPath(path).name
    if re.fullmatch(r"requirements.*\.(txt|in)", name):
        return parse_requirements
    return {
        "pyproject.toml": parse_pyproject,
        "package.json": parse_package_json,
        "go.mod": parse_go_mod,
        "Cargo.toml": parse_cargo,
    }.get(name)


def version_of(spec: str) -> Version | None:
    """The version a spec names: its lower bound (or pin), if it names one."""
    try:
        bounds = [
            Version(s.version)
            for s in SpecifierSet(spec)
            if s.operator in ("==", "===", ">=", ">", "~=") and "*" not in s.version
        ]
        if bounds:
            return max(bounds)
    except (InvalidSpecifier, InvalidVersion):
        pass  # not PEP 440: npm, Cargo and Go ranges
    match = _VERSION.search(spec)
    if not match:
        return None
    try:
        return Version(match.group(0))
    except InvalidVersion:
        return None


def is_unpinned(spec: str) -> bool:
    return spec.strip().lower() in _UNPINNED


def run_manifests(diff: DiffContext, *, agent: str) -> list[Finding]:
    manifests = [
        f for f in diff.files if parser_for(f.path) and f.status != "deleted" and f.new_blob
    ]
    if not manifests:
        return []
    blobs = diff.repo.read_objects(
        [b for f in manifests for b in (f.old_blob, f.new_blob) if b is not None]
    )
    findings: list[Finding] = []
    for file in manifests:
        parse = parser_for(file.path)
        assert parse is not None
        new_text = (blobs.get(file.new_blob or "") or b"").decode("utf-8", "replace")
        old_text = (blobs.get(file.old_blob or "") or b"").decode("utf-8", "replace")
        try:
            new = parse(new_text)
            old = parse(old_text) if file.old_blob else {}
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            findings.append(
                _finding(
                    agent,
                    file.path,
                    None,
                    "invalid-manifest",
                    Severity.medium,
                    f"{file.path} does not parse",
                    str(exc)[:300],
                    "Fix the syntax; tools that install from it will fail too.",
                    "",
                )
            )
            continue
        findings.extend(_compare(agent, file.path, new_text, old, new))
    return findings


_DEV_GROUP = re.compile(r"test|dev|doc|lint|typing|type|check|bench|example", re.IGNORECASE)
_LIBRARY_METADATA = ("pyproject.toml", "setup.cfg", "setup.py")


def _unpinned_severity(path: str, group: str) -> Severity:
    """A library's metadata declares ranges (pinning there breaks its users), and test, dev
    or docs extras and examples are not what production installs: unpinned there is normal."""
    name = PurePosixPath(path).name
    dev = _DEV_GROUP.search(group) or _DEV_GROUP.search(name)
    if name in _LIBRARY_METADATA or dev or kinds.illustrative_kind(path):
        return Severity.info
    return Severity.low


def _compare(
    agent: str,
    path: str,
    text: str,
    old: dict[tuple[str, str], Dependency],
    new: dict[tuple[str, str], Dependency],
) -> Iterable[Finding]:
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if after is None:
            assert before is not None
            yield _finding(
                agent,
                path,
                None,
                "dependency-removed",
                Severity.info,
                f"Dependency removed: {before.name}",
                f"{before.name} {before.spec} was removed from {before.group}.",
                "Check nothing still imports it.",
                before.name,
            )
            continue
        line = _line_of(text, after.name)
        if before is None:
            if is_unpinned(after.spec):
                yield _finding(
                    agent,
                    path,
                    line,
                    "dependency-unpinned",
                    _unpinned_severity(path, after.group),
                    f"Dependency added without a version: {after.name}",
                    f"{after.name} was added to {after.group} with no version "
                    "constraint, so any future release, breaking or malicious, "
                    "installs.",
                    "Pin or bound the version.",
                    after.name,
                )
            else:
                yield _finding(
                    agent,
                    path,
                    line,
                    "dependency-added",
                    Severity.info,
                    f"Dependency added: {after.name} {after.spec}",
                    f"New in {after.group}.",
                    "Check its licence, maintenance and what it pulls in.",
                    after.name,
                )
            continue
        if before.spec == after.spec:
            continue
        old_version, new_version = version_of(before.spec), version_of(after.spec)
        if is_unpinned(after.spec):
            yield _finding(
                agent,
                path,
                line,
                "dependency-unpinned",
                _unpinned_severity(path, after.group),
                f"Version constraint removed: {after.name}",
                f"{after.name} went from {before.spec!r} to {after.spec or 'any'}.",
                "Keep a version constraint.",
                after.name,
            )
        elif old_version and new_version and new_version < old_version:
            yield _finding(
                agent,
                path,
                line,
                "dependency-downgraded",
                Severity.medium,
                f"Dependency downgraded: {after.name} {before.spec} -> {after.spec}",
                "A downgrade can bring back fixed bugs and known vulnerabilities.",
                "Say why in the branch, and check the advisories for the older version.",
                after.name,
            )
        elif old_version and new_version and new_version > old_version:
            major = new_version.major > old_version.major
            yield _finding(
                agent,
                path,
                line,
                "dependency-upgraded",
                Severity.low if major else Severity.info,
                f"Dependency upgraded{' across a major version' if major else ''}: "
                f"{after.name} {before.spec} -> {after.spec}",
                "Major versions may break APIs." if major else "Minor upgrade.",
                "Read the changelog for breaking changes." if major else "",
                after.name,
            )
        else:
            yield _finding(
                agent,
                path,
                line,
                "dependency-changed",
                Severity.info,
                f"Dependency constraint changed: {after.name} {before.spec} -> {after.spec}",
                f"In {after.group}.",
                "",
                after.name,
            )


def _line_of(text: str, name: str) -> int | None:
    # Package names compare with - _ . alike (PEP 503), so look for any of them.
    loose = "[-_.]".join(re.escape(part) for part in re.split(r"[-_.]", name))
    pattern = re.compile(rf"(^|[\s\"'\[.]){loose}($|[\s\"'=<>!~^\[\];:@,])", re.IGNORECASE)
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None


def _finding(
    agent: str,
    path: str,
    line: int | None,
    rule: str,
    severity: Severity,
    title: str,
    detail: str,
    suggestion: str,
    package: str,
) -> Finding:
    return Finding(
        fingerprint=fingerprint(
            source=Source.dependencies, rule=rule, file=path, anchor=f"{package}|{title}"
        ),
        agent=agent,
        category="dependency",
        rule=rule,
        severity=severity,
        confidence=0.9,
        file=path,
        start_line=line,
        end_line=line,
        title=title,
        detail=detail,
        suggestion=suggestion,
        source=Source.dependencies,
    )
