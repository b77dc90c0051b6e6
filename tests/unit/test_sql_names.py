"""Names reach SQL only through db.sql: a source check over app/, workers/ and db/, and the name rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from db.settings import Settings
from db.sql import BadIdentifier, column_name, column_name_problem, quote_ident
from workers.parsers.types import sanitize_columns

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "workers", "db")
SQL_CALLS = frozenset(
    {"execute", "executemany", "exec_driver_sql", "fetch", "fetchrow", "fetchval", "scalar", "scalars", "text"}
)
"""Calls whose first argument is SQL text (asyncpg connections, SQLAlchemy sessions, ``sqlalchemy.text``)."""
QUOTING = frozenset({"quote_ident", "qualified"})
CONSTRUCTS = frozenset({"select", "update", "delete", "insert", "pg_insert", "union_all", "exists"})
"""SQLAlchemy statement builders: they quote names themselves."""
STATEMENT_TYPES = frozenset({"Select", "Update", "Delete", "Insert"})


def _statement_builders() -> frozenset[str]:
    """Functions of ours annotated to return a SQLAlchemy statement (``-> Select[...]``)."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                    if ast.unparse(node.returns).split("[")[0] in STATEMENT_TYPES:
                        found.add(node.name)
    return frozenset(found)


BUILDERS = _statement_builders()
ALLOWED = {
    # Column types and the sink's cast expressions, not names: inferred types from a closed set,
    # or a ColumnType literal msgspec checked.
    ("workers/sink.py", "c.pg_type if c.keep else 'text'"),
    ("workers/sink.py", "t"),
    ("workers/sink.py", "new"),
    ("workers/sink.py", "self._cast(i, new)"),
}


class SqlSplices(ast.NodeVisitor):
    """Finds SQL text built with f-strings, ``%`` or ``.format`` from anything but db.sql's quoting.

    An interpolated value is safe when it is a constant, a call to ``quote_ident``/``qualified``,
    or a local name or ``self`` property whose every assignment is itself safe SQL text (built
    the same way, or joined from such pieces).
    """

    def __init__(self, path: str, source: str, tree: ast.Module) -> None:
        self.path, self.source = path, source
        self.problems: list[str] = []
        self.properties = {
            node.name: node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            and any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
        }
        self.scope: list[ast.AST] = [tree]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.scope.append(node)
        self.generic_visit(node)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name in SQL_CALLS and node.args and not self.sql(node.args[0], depth=0):
            self.problems.append(f"{self.path}:{node.lineno}: {ast.get_source_segment(self.source, node.args[0])}")
        self.generic_visit(node)

    def sql(self, node: ast.AST, depth: int) -> bool:
        """Whether ``node`` is SQL text into which nothing unquoted is spliced."""
        if depth > 8:
            return False
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.JoinedStr):
            return all(self.value(v.value, depth + 1) for v in node.values if isinstance(v, ast.FormattedValue))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.sql(node.left, depth + 1) and self.sql(node.right, depth + 1)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
            return isinstance(node.func.value, ast.Constant) and all(self.pieces(a, depth + 1) for a in node.args)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "text" and node.args:
            return self.sql(node.args[0], depth + 1)
        if isinstance(node, ast.Await) and isinstance(node.value, ast.Call):
            # A statement the server built with format()'s %I / %L from bound parameters.
            call = node.value
            return (
                getattr(call.func, "attr", None) == "fetchval"
                and isinstance(call.args[0], ast.Name | ast.Constant)
                and "format(" in self.constant_text(call.args[0])
            )
        if self.construct(node, depth):
            return True
        return self.named(node, depth, self.sql)

    def construct(self, node: ast.AST, depth: int) -> bool:
        """A SQLAlchemy statement (``select(...).where(...)``, or a name holding one), not text."""
        while isinstance(node, ast.Call | ast.Attribute):
            node = node.func if isinstance(node, ast.Call) else node.value
            if isinstance(node, ast.Name) and (node.id in CONSTRUCTS or node.id in BUILDERS):
                return True
        if not isinstance(node, ast.Name) or depth > 8:
            return False
        function = self.scope[-1]
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in function.args.args + function.args.kwonlyargs:
                if arg.arg == node.id and arg.annotation is not None:
                    return ast.unparse(arg.annotation).split("[")[0] in STATEMENT_TYPES
        return self.named(node, depth, self.construct)

    def value(self, node: ast.AST, depth: int) -> bool:
        """Whether an interpolated value is quoted (or SQL text built only from quoted names)."""
        if (self.path, ast.get_source_segment(self.source, node)) in ALLOWED:
            return True
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in QUOTING:
            return True
        if isinstance(node, ast.JoinedStr | ast.BinOp) or (
            isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "join"
        ):
            return self.sql(node, depth + 1)
        return self.named(node, depth, self.value)

    def pieces(self, node: ast.AST, depth: int) -> bool:
        if isinstance(node, ast.GeneratorExp | ast.ListComp):
            return self.value(node.elt, depth + 1)
        if isinstance(node, ast.List):
            return all(self.value(e, depth + 1) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.pieces(node.left, depth + 1) and self.pieces(node.right, depth + 1)
        return False

    def named(self, node: ast.AST, depth: int, check: object) -> bool:
        """A local name (every assignment in the function checked) or a ``self`` property (its returns)."""
        if isinstance(node, ast.Name):
            values = self.assigned(self.scope[-1], node.id) or self.assigned(self.scope[0], node.id)
            # ``query = query.where(...)`` refines what the other assignments built.
            values = [v for v in values if node.id not in {n.id for n in ast.walk(v) if isinstance(n, ast.Name)}]
            return bool(values) and all(check(v, depth + 1) for v in values)  # type: ignore[operator]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            prop = self.properties.get(node.attr)
            returns = [r.value for r in ast.walk(prop) if isinstance(r, ast.Return) and r.value] if prop else []
            return bool(returns) and all(check(r, depth + 1) for r in returns)  # type: ignore[operator]
        return False

    @staticmethod
    def assigned(scope: ast.AST, name: str) -> list[ast.AST]:
        """Every value assigned to ``name`` in ``scope`` (``a, b = x, y`` pairs them up)."""
        values: list[ast.AST] = []
        for a in ast.walk(scope):
            if isinstance(a, ast.AnnAssign) and a.value is not None:
                pairs = [(a.target, a.value)]
            elif isinstance(a, ast.Assign):
                pairs = []
                for target in a.targets:
                    if isinstance(target, ast.Tuple) and isinstance(a.value, ast.Tuple):
                        pairs += list(zip(target.elts, a.value.elts, strict=False))
                    else:
                        pairs.append((target, a.value))
            else:
                continue
            values += [v for t, v in pairs if isinstance(t, ast.Name) and t.id == name]
        return values

    def constant_text(self, node: ast.AST) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            for assign in ast.walk(self.scope[0]):
                if isinstance(assign, ast.Assign) and any(getattr(t, "id", None) == node.id for t in assign.targets):
                    return self.constant_text(assign.value)
        return ""


def splices(path: str, source: str) -> list[str]:
    tree = ast.parse(source)
    finder = SqlSplices(path, source, tree)
    finder.visit(tree)
    for node in ast.walk(tree):
        # %-formatting and str.format have no quoting at all: never on SQL text.
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _looks_like_sql(node.left):
            finder.problems.append(f"{path}:{node.lineno}: % on SQL text")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and _looks_like_sql(node.func.value)
        ):
            finder.problems.append(f"{path}:{node.lineno}: str.format on SQL text")
    return finder.problems


def _looks_like_sql(node: ast.AST) -> bool:
    text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
    return any(word in text for word in ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "DROP ", "CREATE ", "ALTER "))


def test_no_name_is_spliced_into_sql_outside_the_quoting_helper() -> None:
    files = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)
    assert len(files) > 30
    problems = [problem for path in files for problem in splices(str(path.relative_to(ROOT)), path.read_text())]
    assert problems == []


@pytest.mark.parametrize(
    "code",
    [
        # What the rows API did before: a column name between double quotes, a quote inside not doubled.
        'async def rows(s, cols):\n    names = ", ".join(f\'"{c.name}"\' for c in cols)\n'
        '    await s.execute(text(f"SELECT {names} FROM t"))\n',
        # The schema setting spliced as it was in several places.
        'async def drop(s, schema, table):\n    await s.execute(text(f\'DROP TABLE "{schema}"."{table}"\'))\n',
        'async def f(conn, name):\n    await conn.execute("DROP TABLE %s" % name)\n',
        'async def f(conn, name):\n    await conn.execute("DROP TABLE {}".format(name))\n',
        "async def f(conn, name):\n    sql = f'DROP TABLE {name}'\n    await conn.execute(sql)\n",
        "async def f(conn, name):\n    q = quote_ident(name)\n    q = name\n    await conn.execute(f'DROP TABLE {q}')\n",
    ],
)
def test_the_source_check_finds_splices(code: str) -> None:
    assert splices("example.py", code) != []


def test_the_source_check_accepts_quoted_names() -> None:
    code = (
        "async def f(conn, schema, cols):\n"
        "    table = qualified(schema, 't')\n"
        '    names = ", ".join(quote_ident(c) for c in cols)\n'
        "    await conn.execute(f'SELECT {names} FROM {table} WHERE id = $1', 5)\n"
    )
    assert splices("example.py", code) == []


HOSTILE = [
    'a",(SELECT string_agg(key_hash, \',\') FROM api_keys) AS "z',
    "x; DROP TABLE files; --",
    "a--b",
    "back\\slash",
    "Größe",
    "İstanbul",
    "_row",
    "1st",
    "a" * 64,
    "é" * 32,
    "",
    " spaced ",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_is_not_a_column_name_and_the_hint_is_one(name: str) -> None:
    problem = column_name_problem(name)
    assert problem is not None and repr(name) in problem
    suggestion = column_name(name)
    if suggestion:
        assert column_name_problem(suggestion) is None
        assert f"{suggestion!r} would do" in problem


@pytest.mark.parametrize("name", ["total", "größe", "naïve", "a" * 63, "é" * 31 + "a", "c_1st", "row"])
def test_sanitised_names_are_column_names(name: str) -> None:
    assert column_name_problem(name) is None
    assert sanitize_columns([name]) == [name]


def test_header_sanitising_matches_the_rename_rule() -> None:
    for header in HOSTILE:
        for name in sanitize_columns([header, header]):
            assert column_name_problem(name) is None, (header, name)
            assert len(name.encode()) <= 63


def test_quote_ident_doubles_quotes_and_refuses_what_postgres_would_alter() -> None:
    assert quote_ident('a"b') == '"a""b"'
    for bad in ("", "a\x00b", "a" * 64):
        with pytest.raises(BadIdentifier):
            quote_ident(bad)


@pytest.mark.parametrize(
    "schema", ['datasets"; DROP TABLE files; --', "Datasets", "public", "pg_temp", "1data", "a" * 64, "data sets", ""]
)
def test_the_dataset_schema_setting_must_be_a_plain_name(schema: str) -> None:
    with pytest.raises(ValueError, match="SLUICE_DATASET_SCHEMA"):
        Settings(dataset_schema=schema)


def test_a_plain_dataset_schema_is_accepted() -> None:
    assert Settings(dataset_schema="d" * 63).dataset_schema == "d" * 63
