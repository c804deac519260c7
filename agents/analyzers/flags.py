"""Feature flags: where Python code reads them (by the SDKs' documented call shapes, and the
team's own helpers), what the definition files say, and what a branch changes about them.

Everything here is deterministic and reads Python with `ast`, never a regular expression.

The SDK call shapes, as each SDK's Python documentation gives them:

- OpenFeature (`openfeature-sdk` on PyPI, its README's "Usage"):
  `client.get_boolean_value(key=flag_key, default_value=False)`, and `get_string_value`,
  `get_integer_value`, `get_float_value`, `get_object_value` (the `_details` variants too).
- LaunchDarkly (launchdarkly/python-server-sdk README): `ldclient.get().variation("your.flag.key",
  context, False)`: key, context, default.
- Unleash (`UnleashClient` on PyPI, "Checking if a feature is enabled"):
  `client.is_enabled("my_toggle", app_context, fallback_function=...)`, `get_variant`.
- Flagsmith (the Python snippet in Flagsmith/flagsmith's code help, init-python.js):
  `flags = flagsmith.get_environment_flags(); flags.is_feature_enabled("name")`,
  `flags.get_feature_value("name")`; the older `flagsmith.feature_enabled("name")`.
- GrowthBook (`growthbook` on PyPI, "Quick Usage"): `gb.is_on("my-feature")`,
  `gb.get_feature_value("button-color-feature", "blue")`: key, fallback.
- Split (`splitio_client` on PyPI, "Getting started"): `split.get_treatment('CUSTOMER_ID',
  'FEATURE_FLAG_NAME')`: the flag is the *second* argument, compared with "on" / "off".
- ConfigCat (configcat.com/docs/sdk-reference/python, "Get your setting value"):
  `client.get_value('isMyAwesomeFeatureEnabled', False)`: key, default.

Method names common enough to mean something else (`variation`, `is_enabled`, `get_value`,
`is_on`, `get_feature_value`, ...) count only in a file that imports that SDK's package;
distinctive ones (`get_boolean_value`, `get_treatment`, `is_feature_enabled`) count anywhere.
"""

from __future__ import annotations

import ast
import json
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml

DefinitionFormat = Literal["auto", "yaml", "json", "toml"]


@dataclass(frozen=True)
class FlagSettings:
    """What the policy's `[flags]` says, in the terms the analysis needs."""

    calls: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    format: DefinitionFormat = "auto"
    stale_days: int = 90
    # Newest commits of a definition file read for its flags' ages.
    history: int = 200


@dataclass(frozen=True)
class Shape:
    sdk: str
    key_at: int  # the position of the flag key among the positional arguments
    default_at: int | None  # the position of the default, None: the SDK has none
    key_names: tuple[str, ...] = ("key", "flag_key", "feature_name", "name")
    default_names: tuple[str, ...] = ("default_value", "default", "fallback")
    needs_import: tuple[str, ...] = ()  # top-level packages one of which the file must import


_OPENFEATURE = {
    f"get_{kind}_{what}": Shape("openfeature", 0, 1)
    for kind in ("boolean", "string", "integer", "float", "object")
    for what in ("value", "details")
}
SDK_SHAPES: dict[str, tuple[Shape, ...]] = {
    **{name: (shape,) for name, shape in _OPENFEATURE.items()},
    "variation": (Shape("launchdarkly", 0, 2, needs_import=("ldclient",)),),
    "variation_detail": (Shape("launchdarkly", 0, 2, needs_import=("ldclient",)),),
    "is_enabled": (
        Shape(
            "unleash",
            0,
            None,
            default_names=("fallback_function",),
            needs_import=("UnleashClient",),
        ),
    ),
    "get_variant": (Shape("unleash", 0, None, needs_import=("UnleashClient",)),),
    "is_feature_enabled": (Shape("flagsmith", 0, None),),
    "feature_enabled": (Shape("flagsmith", 0, None, needs_import=("flagsmith",)),),
    "get_feature_value": (
        Shape("growthbook", 0, 1, needs_import=("growthbook",)),
        Shape("flagsmith", 0, None, needs_import=("flagsmith",)),
    ),
    "is_on": (Shape("growthbook", 0, None, needs_import=("growthbook",)),),
    "is_off": (Shape("growthbook", 0, None, needs_import=("growthbook",)),),
    "eval_feature": (Shape("growthbook", 0, None, needs_import=("growthbook",)),),
    "get_treatment": (Shape("split", 1, None, key_names=("feature_name", "split_name")),),
    "get_treatment_with_config": (
        Shape("split", 1, None, key_names=("feature_name", "split_name")),
    ),
    "get_value": (Shape("configcat", 0, 1, needs_import=("configcatclient",)),),
    "get_value_details": (Shape("configcat", 0, 1, needs_import=("configcatclient",)),),
}
# The team's own helpers (`[flags] calls`): key first, default second.
_HELPER = Shape("in-house", 0, 1, default_names=("default", "default_value", "fallback"))


@dataclass(frozen=True)
class FlagRead:
    key: str
    file: str
    line: int
    end_line: int
    sdk: str
    call: str  # the call as written, e.g. `client.get_boolean_value`
    default: str | None  # the default as written (`False`), None when the call gives none


@dataclass(frozen=True)
class FlagGuard:
    """An `if` whose test is a flag read (or `not` one, or a Split treatment compared)."""

    key: str
    file: str
    line: int  # the `if` line
    end_line: int
    has_else: bool


@dataclass
class FileFlags:
    reads: list[FlagRead] = field(default_factory=list)
    guards: list[FlagGuard] = field(default_factory=list)


def words_of(settings: FlagSettings) -> set[str]:
    """The method and helper names a file must contain before it is worth parsing."""
    return set(SDK_SHAPES) | {call.rsplit(".", 1)[-1] for call in settings.calls}


def might_read_flags(text: str, settings: FlagSettings) -> bool:
    """A cheap test before `ast.parse`: no call name in the text, no flag read."""
    return any(f"{word}(" in text for word in words_of(settings))


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    if isinstance(node, ast.Call):
        inner = _dotted(node.func)
        return f"{inner}()" if inner else ""
    return ""


def imports_of(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def _argument(call: ast.Call, at: int | None, names: tuple[str, ...]) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg in names:
            return keyword.value
    if (
        at is not None
        and at < len(call.args)
        and not any(isinstance(a, ast.Starred) for a in call.args[: at + 1])
    ):
        return call.args[at]
    return None


def _helper(call_name: str, calls: Iterable[str]) -> bool:
    return any(call_name == c or call_name.endswith(f".{c}") for c in calls)


def read_of(
    node: ast.Call, path: str, imports: set[str], calls: tuple[str, ...]
) -> FlagRead | None:
    """The flag this call reads, if it is one of the known shapes with a literal key."""
    name = _dotted(node.func)
    if not name:
        return None
    shapes: tuple[Shape, ...] = ()
    if _helper(name, calls):
        shapes = (_HELPER,)
    elif isinstance(node.func, ast.Attribute):
        shapes = tuple(
            s
            for s in SDK_SHAPES.get(node.func.attr, ())
            if not s.needs_import or imports & set(s.needs_import)
        )
    for shape in shapes:
        key = _argument(node, shape.key_at, shape.key_names)
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value):
            continue
        default = _argument(node, shape.default_at, shape.default_names)
        return FlagRead(
            key=key.value,
            file=path,
            line=node.lineno,
            end_line=node.end_lineno or node.lineno,
            sdk=shape.sdk,
            call=name,
            default=ast.unparse(default) if default is not None else None,
        )
    return None


def guard_read(
    test: ast.expr, path: str, imports: set[str], calls: tuple[str, ...]
) -> FlagRead | None:
    """The flag an `if` test is exactly about: `read`, `not read`, `read == CONSTANT`. Any
    constant (a variant too): which side is the flag's "on" is the retirement's question,
    answered there only for "on", "off", True and False."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test = test.operand
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq | ast.NotEq)
        and isinstance(test.comparators[0], ast.Constant)
    ):
        test = test.left
    if isinstance(test, ast.Call):
        return read_of(test, path, imports, calls)
    return None


def scan(text: str, path: str, settings: FlagSettings) -> FileFlags | None:
    """Every flag read and guard in one Python file; None when it does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    imports = imports_of(tree)
    found = FileFlags()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            read = read_of(node, path, imports, settings.calls)
            if read is not None:
                found.reads.append(read)
        elif isinstance(node, ast.If):
            read = guard_read(node.test, path, imports, settings.calls)
            if read is not None:
                found.guards.append(
                    FlagGuard(
                        key=read.key,
                        file=path,
                        line=node.lineno,
                        end_line=node.end_lineno or node.lineno,
                        has_else=bool(node.orelse),
                    )
                )
    found.reads.sort(key=lambda r: (r.line, r.key))
    found.guards.sort(key=lambda g: (g.line, g.key))
    return found


# --- definition files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    key: str
    default: Any  # the value served when nothing else decides; None: the file gives none
    has_default: bool
    raw: str  # a canonical dump of the whole entry: equal entries, equal raw


class DefinitionError(ValueError):
    """A definition file that cannot be read in its format."""


def format_of(path: str, configured: DefinitionFormat) -> Literal["yaml", "json", "toml"]:
    if configured != "auto":
        return configured
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml"
    return "yaml"


_DEFAULT_KEYS = ("default", "defaultValue", "default_value", "enabled", "value", "on")


# A definition file larger than this is said to be too large, not read.
MAX_DEFINITION_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases (`*name`). `safe_load` keeps a repeated alias as
    one shared object, and dumping the entries expands every reference: a few hundred bytes of
    nested aliases become hundreds of megabytes. Refused when the first alias is composed,
    before anything is expanded."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*name) are not read in flag definitions",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _load(text: str, fmt: str) -> Any:
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError(
            f"the file is larger than {MAX_DEFINITION_BYTES // 1_000_000} MB ({size} bytes), "
            "not read"
        )
    try:
        if fmt == "json":
            return json.loads(text)
        if fmt == "toml":
            return tomllib.loads(text)
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except (ValueError, yaml.YAMLError) as exc:
        raise DefinitionError(" ".join(str(exc).split())[:200]) from None  # one line


def flags_table(data: Any) -> dict[str, Any]:
    """The mapping of flag keys: the document itself, or its `flags` / `features` table."""
    if not isinstance(data, dict):
        return {}
    for name in ("flags", "features", "feature_flags"):
        inner = data.get(name)
        if isinstance(inner, dict) and len(data) == 1:
            return inner
    return data


def parse_definitions(
    text: str, path: str, configured: DefinitionFormat = "auto"
) -> dict[str, Definition]:
    """The flags a definition file defines, by key. Raises DefinitionError."""
    table = flags_table(_load(text, format_of(path, configured)))
    out: dict[str, Definition] = {}
    for key, entry in table.items():
        if not isinstance(key, str):
            continue
        if isinstance(entry, dict):
            name = next((k for k in _DEFAULT_KEYS if k in entry), None)
            default, has = (entry[name], True) if name is not None else (None, False)
        else:
            default, has = entry, entry is not None
        raw = json.dumps(entry, sort_keys=True, default=str)
        out[key] = Definition(key=key, default=default, has_default=has, raw=raw)
    return out


def shown_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return json.dumps(value, default=str)[:80]


def key_lines(text: str, key: str) -> Iterator[int]:
    """Lines (1-based) of a definition file that name `key`: where a finding points."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip().strip('"').strip("'")
        if stripped.startswith((key, f'"{key}"', f"'{key}'", f"[{key}]")) or f'"{key}"' in line:
            yield number
