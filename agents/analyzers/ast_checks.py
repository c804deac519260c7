"""Small AST checks for what bandit does not see, on the lines a branch changed:

- TLS verification turned off by assignment (`session.verify = False`,
  `ctx.check_hostname = False`, `ctx.verify_mode = ssl.CERT_NONE`);
- SQL built from a SQL-looking constant or f-string (`QUERY % key`, `QUERY.format(...)`,
  `"..." + name`, directly or through one variable) that reaches `execute()`;
- XML parsed with the standard library (or lxml) when the parser's import came through a
  `try/except ImportError` fallback or an alias, which bandit's call checks do not follow.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from agents.analyzers.merge import problem_fingerprint
from agents.context import files as kinds
from agents.context.workspace import Workspace
from agents.report import Finding, Severity, Source

_SQL = re.compile(
    r"^\s*(select\b.*\bfrom\b|insert\s+into\b|update\b.*\bset\b|delete\s+from\b|replace\s+into\b"
    r"|with\b.*\bas\s*\(|create\s+(table|index|view)\b|drop\s+(table|index|view)\b)",
    re.IGNORECASE | re.DOTALL,
)
_OPT_OUT = re.compile(r"verif|insecure|check_?hostname|validate|cert|no_?ssl|ssl_?check", re.I)
_EXECUTE = frozenset({"execute", "executemany", "executescript", "raw", "mogrify"})
_UNSAFE_XML_MODULES = (
    "xml.etree",
    "xml.dom",
    "xml.sax",
    "lxml.etree",
    "lxml",
    "xml.parsers.expat",
)
_XML_PARSE = frozenset(
    {
        "fromstring",
        "parse",
        "XML",
        "iterparse",
        "parseString",
        "XMLParser",
        "make_parser",
        "fromstringlist",
        "XMLID",
        "ParserCreate",
    }
)


@dataclass(frozen=True)
class _Hit:
    problem: str
    line: int
    title: str
    detail: str
    suggestion: str


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _looks_sql(text: str) -> bool:
    return bool(_SQL.match(text))


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.hits: list[_Hit] = []
        # Per function (the module is the outermost scope): names bound to a SQL-looking
        # string, and names bound to SQL built from strings. A rebinding forgets a name.
        self.scopes: list[tuple[set[str], set[str]]] = [(set(), set())]
        # name -> the modules it was imported from, every branch of a try/except included
        self.imports: dict[str, set[str]] = {}
        self.fallback: set[str] = set()  # names imported again in an `except ImportError`
        self.conditions: list[str] = []  # the source of each enclosing `if` test

    @property
    def sql_constants(self) -> set[str]:
        return self.scopes[-1][0] | self.scopes[0][0]

    @property
    def built_sql(self) -> set[str]:
        return self.scopes[-1][1]

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append((set(), set()))
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self.conditions.append(ast.unparse(node.test))
        for statement in node.body:
            self.visit(statement)
        self.conditions.pop()
        # An `else` of a verification switch is the switch's other side: still the opt-out.
        self.conditions.append(f"not ({ast.unparse(node.test)})")
        for statement in node.orelse:
            self.visit(statement)
        self.conditions.pop()

    # -- imports --------------------------------------------------------------------------------

    def _bind(self, name: str, module: str, fallback: bool) -> None:
        self.imports.setdefault(name, set()).add(module)
        if fallback:
            self.fallback.add(name)

    def visit_Try(self, node: ast.Try) -> None:
        for statement in node.body:
            self.visit(statement)
        for handler in node.handlers:
            caught = _dotted(handler.type) if handler.type is not None else ""
            is_import_error = caught in ("ImportError", "ModuleNotFoundError") or (
                isinstance(handler.type, ast.Tuple)
                and any(
                    _dotted(e) in ("ImportError", "ModuleNotFoundError") for e in handler.type.elts
                )
            )
            for statement in handler.body:
                if is_import_error and isinstance(statement, ast.Import | ast.ImportFrom):
                    self._import(statement, fallback=True)
                else:
                    self.visit(statement)
        for statement in node.orelse + node.finalbody:
            self.visit(statement)

    def _import(self, node: ast.Import | ast.ImportFrom, *, fallback: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # `import xml.etree.ElementTree as ET`: ET is the module
                    self._bind(alias.asname, alias.name, fallback)
                else:  # `import xml.dom.minidom` binds `xml`, the top package
                    top = alias.name.split(".")[0]
                    self._bind(top, top, fallback)
        else:
            base = node.module or ""
            for alias in node.names:
                self._bind(alias.asname or alias.name, f"{base}.{alias.name}", fallback)

    def visit_Import(self, node: ast.Import) -> None:
        self._import(node, fallback=False)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._import(node, fallback=False)

    # -- TLS --------------------------------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Attribute):
                self._tls(target, node.value, node.lineno)
            if isinstance(target, ast.Name):
                constants, built = self.scopes[-1]
                constants.discard(target.id)
                built.discard(target.id)
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    if _looks_sql(value.value):
                        constants.add(target.id)
                elif self._built_sql(value):
                    built.add(target.id)
        self.generic_visit(node)

    def _tls(self, target: ast.Attribute, value: ast.AST, line: int) -> None:
        # `self.verify = False` sets an object's own flag (a form, a validator), not a client.
        if isinstance(target.value, ast.Name) and target.value.id in ("self", "cls"):
            return
        # Under `if verify is False:` / `if insecure:` this is the caller's explicit opt-out
        # (how an HTTP client implements verify=False), not verification silently dropped.
        if any(_OPT_OUT.search(condition) for condition in self.conditions):
            return
        if target.attr in ("verify", "check_hostname") and _is_false(value):
            what = f"{_dotted(target)} = False"
        elif target.attr == "verify_mode" and _dotted(value).endswith("CERT_NONE"):
            what = f"{_dotted(target)} = {_dotted(value)}"
        else:
            return
        self.hits.append(
            _Hit(
                "tls-verification-off",
                line,
                "TLS certificate verification turned off",
                f"`{what}` accepts any certificate: anyone on the network path can read and "
                "change the traffic.",
                "Keep verification on; pass a CA bundle for a private CA.",
            )
        )

    # -- SQL --------------------------------------------------------------------------------------

    def _built_sql(self, node: ast.AST) -> bool:
        """A string built by formatting, where the template is SQL-looking."""
        if isinstance(node, ast.JoinedStr):
            literal = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            return _looks_sql(literal) and any(
                isinstance(v, ast.FormattedValue) for v in node.values
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            return self._sql_template(node.left) or (
                isinstance(node.op, ast.Add) and self._built_sql(node.left)
            )
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
        ):
            return self._sql_template(node.func.value)
        return False

    def _sql_template(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return _looks_sql(node.value)
        if isinstance(node, ast.Name):
            return node.id in self.sql_constants
        return False

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else _dotted(node.func)
        if name in _EXECUTE and node.args:
            query = node.args[0]
            direct = self._built_sql(query) and not isinstance(query, ast.Constant)
            via = isinstance(query, ast.Name) and query.id in self.built_sql
            # A plain f-string or literal formatting is bandit's B608; a named template or a
            # variable in between is what it misses. Both are reported, merged with bandit's.
            if direct or via:
                self.hits.append(
                    _Hit(
                        "sql-injection",
                        query.lineno,  # where bandit puts B608, so the two merge
                        "SQL built from strings reaches execute()",
                        "The query is formatted from a SQL template (%, +, .format or an "
                        "f-string); a value from outside can change the statement.",
                        "Use placeholders and pass the values as parameters to execute().",
                    )
                )
        self._xml(node)
        self.generic_visit(node)

    # -- XML --------------------------------------------------------------------------------------

    def _xml(self, node: ast.Call) -> None:
        dotted = _dotted(node.func)
        if not dotted:
            return
        head, _, rest = dotted.partition(".")
        leaf = dotted.rsplit(".", 1)[-1]
        if leaf not in _XML_PARSE or head not in self.imports:
            return
        modules = {f"{m}.{rest}" if rest else m for m in self.imports[head]}
        unsafe = sorted(m for m in modules if m.startswith(_UNSAFE_XML_MODULES))
        if not unsafe:
            return
        fallback = head in self.fallback
        aliased = any(not m.endswith(f".{head}") and m != head for m in self.imports[head])
        if not (fallback or aliased):
            return  # a plain `xml.etree.ElementTree.parse` is bandit's B313-B320
        if any(k.arg == "resolve_entities" and _is_false(k.value) for k in node.keywords):
            return
        how = "a try/except ImportError fallback" if fallback else "an alias"
        self.hits.append(
            _Hit(
                "unsafe-xml",
                node.lineno,
                "XML parsed with a parser that expands entities",
                f"`{dotted}` resolves to {unsafe[0]} through {how}: external entities and "
                "entity expansion (XXE, billion laughs) reach the parser.",
                "Use defusedxml unconditionally (no fallback), or lxml with "
                "resolve_entities=False and no_network=True.",
            )
        )


# A changed line must name one of these for any check here to fire on it: files without one
# are not parsed at all (most of a large branch).
_TRIGGER = re.compile(
    r"verify|check_hostname|CERT_NONE|execute|\.raw\(|mogrify|xml|etree|minidom|sax|expat"
    r"|fromstring|parseString|XMLParser|iterparse|\bparse\("
)


def run_ast_checks(workspace: Workspace, *, agent: str) -> list[Finding]:
    findings: list[Finding] = []
    for diff in workspace.python_files():
        if kinds.illustrative_kind(diff.path) is not None:
            continue
        if not any(_TRIGGER.search(line) for line in diff.added_lines.values()):
            continue
        text = workspace.texts[diff.path].removeprefix("\ufeff")
        checker = _Checker()
        try:
            checker.visit(ast.parse(text))
        except (SyntaxError, ValueError):
            continue  # ruff reports the syntax error
        except (RecursionError, MemoryError):
            continue  # too deeply nested to walk; bandit and ruff still read it
        # A line the branch only moved (the same text removed elsewhere) is no new problem.
        moved = {line.strip() for line in diff.removed_lines}
        for hit in checker.hits:
            line_text = diff.added_lines.get(hit.line)
            if line_text is None or line_text.strip() in moved:
                continue
            findings.append(
                Finding(
                    fingerprint=problem_fingerprint(hit.problem, diff.path, line_text),
                    agent=agent,
                    category="security",
                    rule=f"problem:{hit.problem}",
                    severity=Severity.high,
                    confidence=0.8,
                    file=diff.path,
                    start_line=hit.line,
                    end_line=hit.line,
                    title=hit.title,
                    detail=hit.detail,
                    suggestion=hit.suggestion,
                    source=Source.heuristic,
                )
            )
    return findings
