"""detect-secrets' diff scan, with the lines no plugin finds anything in skipped early.

detect-secrets takes every added line through its line filters and then all 27 plugins, each
call through its dependency injection: on a 52,000-line branch that is 8 s of one core. Nearly
every line yields nothing. Here each plugin's own `analyze_line` is asked first, directly; a
line none of them finds anything in cannot give a secret (a secret is only ever one of those
answers, filtered), so it is skipped. Every other line goes through detect-secrets' own steps,
with the same context (the file's added lines, as `scan_diff` builds it), so the answer is the
same as `scan_diff`'s: `tests/test_secrets_lines.py` compares the two on a corpus.

The steps are detect-secrets' private helpers; if a release renames them, `scan_diff` itself
is used, slower but the same.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

from detect_secrets.core import scan as _scan
from detect_secrets.plugins import keyword
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
from detect_secrets.settings import default_settings, get_plugins, get_settings
from detect_secrets.util.code_snippet import get_code_snippet

log = logging.getLogger(__name__)
# detect-secrets keeps its settings in a process-wide singleton.
_SETTINGS_LOCK = threading.Lock()
# What a scan found: the file's index, the secret's kind, its line, its value.
Hit = tuple[int, str, int, str]

try:
    _lines_of = _scan._get_lines_from_diff
    _filtered_out = _scan._is_filtered_out
    _scan_line = _scan._scan_line
    SHORTCUT = True
except AttributeError:  # pragma: no cover - a detect-secrets release without these helpers
    SHORTCUT = False


# What a plugin asks itself first: a line without it gives the plugin nothing.
Gate = re.Pattern[str] | None
Checks = tuple[list[re.Pattern[str]], list[tuple[Gate, Any]]]
# Every pattern of the keyword plugin requires one of its keywords (`keyword.DENYLIST_REGEX`).
_KEYWORDS = re.compile(keyword.DENYLIST_REGEX, re.IGNORECASE)


def _own(plugin: Any, base: type, *methods: str) -> bool:
    """Whether the plugin is `base` as detect-secrets ships it, those methods not overridden."""
    kind = type(plugin)
    return isinstance(plugin, base) and all(
        getattr(kind, name) is getattr(base, name) for name in methods
    )


def _checks(plugins: list[Any]) -> Checks:
    """How to tell cheaply that a plugin finds nothing in a line. A plugin that is only its
    patterns (detect-secrets' RegexBasedDetector, not overridden) finds nothing where none of
    them matches, so they are searched for directly. The keyword plugin needs one of its
    keywords, the entropy plugins a quoted string of their characters (their own `regex`);
    where that is there, they are asked as themselves, as is any other plugin."""
    patterns: list[re.Pattern[str]] = []
    gated: list[tuple[Gate, Any]] = []
    for plugin in plugins:
        if _own(plugin, RegexBasedDetector, "analyze_string", "analyze_line"):
            patterns += plugin.denylist
        elif type(plugin) is keyword.KeywordDetector and _own(
            plugin, keyword.KeywordDetector, "analyze_string", "analyze_line"
        ):
            gated.append((_KEYWORDS, plugin))
        elif isinstance(plugin, HighEntropyStringsPlugin) and _own(
            plugin, HighEntropyStringsPlugin, "analyze_string", "analyze_line"
        ):
            gated.append((plugin.regex, plugin))
        else:
            gated.append((None, plugin))
    return patterns, gated


def _maybe(line: str, filename: str, number: int, checks: Checks) -> bool:
    """Whether any plugin may find something in the line (never False when one would)."""
    patterns, gated = checks
    return any(pattern.search(line) for pattern in patterns) or any(
        (gate is None or gate.search(line))
        and plugin.analyze_line(filename=filename, line=line, line_number=number)
        for gate, plugin in gated
    )


def scan_diff(diff: str) -> Iterator[Any]:
    """The potential secrets detect-secrets' `scan_diff` yields for `diff`, in its order.
    Call it with detect-secrets' settings in force, as `scan_diff` itself needs."""
    if not SHORTCUT:  # pragma: no cover
        yield from _scan.scan_diff(diff)
        return
    plugins = get_plugins()
    checks = _checks(plugins)
    for filename, lines in _lines_of(diff):
        line_content = [text for _, text in lines]
        for line_number, raw in lines:
            line = raw.rstrip()
            if not _maybe(line, filename, line_number, checks):
                continue
            # From here on, detect-secrets' `_process_line_based_plugins`, step for step.
            context = get_code_snippet(lines=line_content, line_number=line_number)
            if _filtered_out(
                required_filter_parameters=["line"], filename=filename, line=line, context=context
            ):
                continue
            for plugin in plugins:
                for secret in _scan_line(
                    plugin=plugin,
                    filename=filename,
                    line=line,
                    line_number=line_number,
                    context=context,
                ):
                    if not _filtered_out(
                        required_filter_parameters=["context"],
                        filename=secret.filename,
                        secret=secret.secret_value,
                        plugin=plugin,
                        line=line,
                        context=context,
                    ):
                        yield secret


def scan_diffs(diffs: list[tuple[str, str]], first: int = 0) -> tuple[list[Hit], list[int]]:
    """detect-secrets over synthetic one-file diffs (name, diff), in this process: the hits,
    and the indices of the files whose scan failed (never to be taken for "no secrets")."""
    hits: list[Hit] = []
    failed: list[int] = []
    with _SETTINGS_LOCK, default_settings():
        # The scanned files are not in the working directory; don't let that filter drop them.
        get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")
        for offset, (name, text) in enumerate(diffs):
            try:
                found = list(_scan_one(text))
            except Exception as exc:  # one odd file must not cost the others their scan
                log.warning("secrets scan of %s failed: %s", name, exc)
                failed.append(first + offset)
                continue
            hits += [
                (first + offset, str(s.type), int(s.line_number), str(s.secret_value or ""))
                for s in found
            ]
    return hits, failed


def _scan_one(text: str) -> Iterator[Any]:
    """The shortcut scan, or detect-secrets' own where the shortcut's helpers no longer take
    what they took (a release that changed a private helper's arguments: slower, the same)."""
    try:
        yield from list(scan_diff(text))
    except TypeError:
        log.warning("the shortcut secrets scan failed; using detect-secrets' own scan_diff")
        yield from _scan.scan_diff(text)
