"""The scope guard: every statement a session runs on a tenant table is confined to the session's scope.

`scoped_session` opens a transaction whose ``session.info["scope"]`` is an `aima.access.Scope`. The
guard (`guard`, on by engine) hooks ``SessionEvents.do_orm_execute``, which SQLAlchemy 2 fires for
every statement run through ``Session.execute``/``scalars``/``scalar``, Core constructs included,
and rewrites a copy of the statement before it is compiled:

- SELECT, UPDATE and DELETE get ``tenant_id = :scope`` for every tenant table they read from, in
  subqueries, CTEs and joins too (for the inner side of an outer join, in its ON clause), and
  ``case IN (:cases)`` for case tables when the scope is limited to some cases. A repository that
  forgets its WHERE still cannot return another tenant's or case's rows.
- INSERT rows must name the scope's tenant and, for case tables, one of its cases, as plain
  values, and an UPDATE may not set them to anything else; otherwise `ScopeViolation`.
  ``ON CONFLICT DO UPDATE`` only updates rows in scope.
- A statement on a tenant table in a session without a scope raises `UnscopedQuery`, as do raw
  SQL text naming a tenant table, scoped or not (it cannot be checked), and anything else the guard
  cannot confine (INSERT ... SELECT, FULL OUTER JOIN, data-modifying CTEs on tenant tables).
- A *flat* Core statement (only plain tables in FROM; no joins, aliases, subqueries or nested
  statements) gets its criteria added generatively, without copying its whole tree: the common
  case, at a fraction of the cost; everything else goes through the general rewrite. Both write
  the same SQL (tested).
- Statements sent over the session's connection directly (``session.connection().execute`` or
  ``exec_driver_sql``) skip ``do_orm_execute``; a ``ConnectionEvents.before_cursor_execute`` backstop
  refuses those whose SQL names a tenant table.

Other tables (migrations, the processed-events ledger, tenants, signing keys, refresh tokens,
configuration entries) are not guarded, and neither are plain engine connections: those are for
migrations and maintenance, not request handling. `unscoped_session` is the one deliberate way
around the guard, for lookups that must precede any scope (finding the user who is logging in).
"""

from __future__ import annotations

import functools
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, event, literal, select
from sqlalchemy.dialects.postgresql.dml import OnConflictDoUpdate as PgOnConflictDoUpdate
from sqlalchemy.dialects.sqlite.dml import OnConflictDoUpdate as SqliteOnConflictDoUpdate
from sqlalchemy.engine.interfaces import ExecutionContext
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql import visitors
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnClause, ColumnElement, TextClause
from sqlalchemy.sql.selectable import (
    AliasedReturnsRows,
    FromClause,
    Join,
    Select,
    SelectBase,
    SelectState,
    TableClause,
)

from aima.access.scope import Scope
from aima.storage.relational import Database

TENANT_TABLES = frozenset(
    {"cases", "media", "jobs", "job_steps", "case_members", "users", "audit_log", "audit_heads"}
)
"""Tables whose rows belong to a tenant; each has a ``tenant_id`` column."""
CASE_COLUMNS = {
    "cases": "id",
    "media": "case_id",
    "jobs": "case_id",
    "job_steps": "case_id",
    "case_members": "case_id",
}
"""Tables whose rows belong to a case, and the column naming it."""

SCOPE_KEY = "scope"
_UNSCOPED_KEY = "aima.unscoped_reason"
_CHECKED = "aima_scope_checked"  # execution option: the statement passed the session hook
_SESSION = "aima_session_connection"  # execution option: the connection belongs to a session
_TEXT_NAMES = re.compile(r"\b(" + "|".join(sorted(TENANT_TABLES)) + r")\b", re.IGNORECASE)
_MISSING = object()

_guarded: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()


class UnscopedQuery(RuntimeError):
    """A statement touched a tenant table without a scope, or in a way the guard cannot confine."""


class ScopeViolation(RuntimeError):
    """An INSERT or UPDATE would write a row outside the session's scope."""


def guard(db: Database) -> None:
    """Guard every session of ``db`` from now on (idempotent). Repositories call it; so should startup."""
    with _lock:
        if not event.contains(Session, "do_orm_execute", _on_execute):
            event.listen(Session, "do_orm_execute", _on_execute)
            event.listen(Session, "after_begin", _on_begin)
        if db.engine not in _guarded:
            _guarded.add(db.engine)
            event.listen(db.engine, "before_cursor_execute", _backstop)


@contextmanager
def scoped_session(db: Database, scope: Scope, *, readonly: bool = False) -> Iterator[Session]:
    """A guarded session in one transaction, confined to ``scope`` (see module docstring);
    ``readonly`` for transactions that only read (see `Database.session`)."""
    guard(db)
    with db.session(readonly=readonly) as session:
        session.info[SCOPE_KEY] = scope
        yield session


IDENTITY_LOOKUP = "identity: users and memberships are looked up before any tenant scope exists"


@contextmanager
def unscoped_session(db: Database, *, reason: str, readonly: bool = False) -> Iterator[Session]:
    """A session in one transaction that may read and write every tenant's rows.

    Only for lookups that must come before any scope exists, such as finding a user by login name;
    ``reason`` says which, so every use is explicit and easy to find.
    """
    if not reason.strip():
        raise ValueError("an unscoped session needs a reason")
    guard(db)
    with db.session(readonly=readonly) as session:
        session.info[_UNSCOPED_KEY] = reason
        yield session


def confine(statement: Executable, scope: Scope | None, parameters: Any = None) -> Executable:
    """``statement`` limited to ``scope`` (a rewritten copy; the original is left alone).

    ``parameters`` are the execution parameters (a dict or a list of dicts), checked for INSERTs.
    Raises `UnscopedQuery` if the statement touches a tenant table and ``scope`` is None or the
    statement cannot be confined, `ScopeViolation` if an INSERT writes outside the scope.
    """
    if not isinstance(statement, ClauseElement):
        return statement
    names, flat = _survey(statement)
    if not names:
        return statement
    if scope is None:
        raise UnscopedQuery(f"a statement on {', '.join(sorted(names))} ran without a scope")
    return cast(Executable, _Confiner(scope).confine(statement, parameters, flat=flat))


def _on_execute(state: ORMExecuteState) -> None:
    session = state.session
    bind = session.bind.engine if isinstance(session.bind, Connection) else session.bind
    if bind not in _guarded:
        return
    if _UNSCOPED_KEY not in session.info:
        state.statement = confine(state.statement, session.info.get(SCOPE_KEY), state.parameters)
    state.update_execution_options(**{_CHECKED: True})


def _on_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    if connection.engine in _guarded:
        connection.execution_options(**{_SESSION: True})


def _backstop(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> None:
    options = context.execution_options if context is not None else conn.get_execution_options()
    if options.get(_SESSION) and not options.get(_CHECKED):
        found = _TEXT_NAMES.search(statement)
        if found:
            raise UnscopedQuery(
                f"SQL naming {found.group(1)} bypassed the scope guard on a session's connection; "
                "use Session.execute"
            )


def _touched_tables(statement: ClauseElement) -> set[str]:
    """Tenant tables the statement names; raises `UnscopedQuery` for raw SQL naming one."""
    return _survey(statement)[0]


def _survey(statement: ClauseElement) -> tuple[set[str], bool]:
    """Tenant tables the statement names, and whether it is *flat*: a Core statement whose only
    FROM elements are plain tables, without subqueries, joins, aliases, CTEs, functions in FROM
    position or nested statements (so its scope criteria can simply be added to its WHERE).
    Raises `UnscopedQuery` for raw SQL naming a tenant table."""
    names: set[str] = set()
    flat = isinstance(statement, Select | Insert | Update | Delete) and _core_only(statement)
    own_table = statement.table if isinstance(statement, UpdateBase) else None
    for element in visitors.iterate(statement, {"column_tables": True}):
        if isinstance(element, TableClause):
            if element.name in TENANT_TABLES:
                names.add(element.name)
            if own_table is not None and element is not own_table:
                flat = False
        elif element is not statement and isinstance(element, FromClause | SelectBase | UpdateBase):
            flat = False
        elif isinstance(element, ColumnClause) and own_table is not None and element.table is not own_table:
            # a DML statement's WHERE or SET naming another table (UPDATE ... FROM, DELETE ...
            # USING), which the traversal does not yield as a table, or a free-standing column
            flat = False
            table = _tenant_table(element.table) if element.table is not None else None
            if table is not None:
                names.add(table)
        if isinstance(element, TextClause):
            _check_text(element.text)
        elif isinstance(element, ColumnClause) and element.is_literal:
            _check_text(element.name)
        if (
            element is not statement
            and isinstance(element, UpdateBase)
            and isinstance(element.table, TableClause)
            and element.table.name in TENANT_TABLES
        ):
            raise UnscopedQuery(f"a data-modifying CTE on {element.table.name} cannot be scoped")
    return names, flat


def _core_only(statement: ClauseElement) -> bool:
    """Not ORM-enabled, and (for a SELECT) without joins that are only built when compiling."""
    if statement._propagate_attrs.get("compile_state_plugin", "default") != "default":
        return False
    return not (isinstance(statement, Select) and statement._setup_joins)


def _check_text(sql: str) -> None:
    found = _TEXT_NAMES.search(sql)
    if found:
        raise UnscopedQuery(f"raw SQL naming the tenant table {found.group(1)} cannot be scoped")


def _tenant_table(from_: FromClause) -> str | None:
    """The tenant table ``from_`` reads: the table itself or an alias of it."""
    if isinstance(from_, AliasedReturnsRows):
        from_ = from_.element  # type: ignore[assignment]  # an alias of a table, or a subquery
    if isinstance(from_, TableClause) and from_.name in TENANT_TABLES:
        return str(from_.name)
    return None


class _Confiner:
    """Rewrites one statement for one scope; see the module docstring for the rules."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def confine(self, statement: ClauseElement, parameters: Any, *, flat: bool = False) -> ClauseElement:
        if isinstance(statement, Insert | Update):
            self._check_written_rows(statement, parameters)
        if flat:
            fast = self._confine_flat(statement)
            if fast is not None:
                return fast
        visit: dict[str, Callable[[Any], None]] = {
            "select": self._select,
            "update": self._dml,
            "delete": self._dml,
            "insert": self._on_conflict,
        }
        return visitors.cloned_traverse(statement, {}, visit)

    def _confine_flat(self, statement: ClauseElement) -> ClauseElement | None:
        """A flat statement (see `_survey`) with the scope added to its WHERE, generatively, without
        copying the whole tree as the general rewrite does; None if it needs the general rewrite."""
        if isinstance(statement, Select):
            where = [c for from_ in _final_froms(statement) for c in self.criteria(from_)]
            return statement.where(*where) if where else statement
        if isinstance(statement, Update | Delete):
            where = self.criteria(statement.table)
            return statement.where(*where) if where else statement
        if isinstance(statement, Insert) and statement._post_values_clause is None:
            return statement  # its rows were checked; an INSERT has nothing to confine
        return None

    def criteria(self, from_: FromClause) -> list[ColumnElement[bool]]:
        """The scope as conditions on ``from_`` (empty if it is no tenant table)."""
        if isinstance(from_, Table):  # a table of the schema: its criteria for a scope are reusable
            return list(_table_criteria(from_, self.scope.tenant_id, self.scope.case_ids))
        return _criteria(from_, self.scope.tenant_id, self.scope.case_ids)

    def _select(self, statement: Select[Any]) -> None:
        froms = _final_froms(statement)
        if statement._setup_joins:
            # Select.join() builds its JOINs at compile time; make them explicit so they can carry ON criteria
            statement._setup_joins = ()
            statement._from_obj = tuple(froms)
            statement._reset_memoizations()
        where: list[ColumnElement[bool]] = []
        for from_ in froms:
            self._collect(from_, where)
        statement._where_criteria += tuple(where)

    def _collect(self, from_: FromClause, sink: list[ColumnElement[bool]]) -> None:
        """Criteria of ``from_``'s tables into ``sink``; those of a join's right side into its ON clause."""
        if not isinstance(from_, Join):
            sink.extend(self.criteria(from_))
            return
        if from_.full and _touched_tables(from_):
            raise UnscopedQuery("a FULL OUTER JOIN of a tenant table cannot be scoped")
        self._collect(from_.left, sink)
        right: list[ColumnElement[bool]] = []
        self._collect(from_.right, right)
        if right:
            from_.onclause = and_(from_.onclause, *right) if from_.onclause is not None else and_(*right)

    def _dml(self, statement: Update | Delete) -> None:
        expressions: list[ColumnElement[Any]] = list(statement._where_criteria)
        if isinstance(statement, Update) and statement._values:
            expressions += [v for v in statement._values.values() if isinstance(v, ColumnElement)]
        froms: list[FromClause] = [statement.table]
        if isinstance(statement, Delete):
            froms += statement._extra_froms
        if expressions:  # tables named in WHERE or SET become UPDATE ... FROM / DELETE ... USING
            froms += _final_froms(select(literal(1), *expressions))
        where: list[ColumnElement[bool]] = []
        for from_ in _unique(froms):
            self._collect(from_, where)
        statement._where_criteria += tuple(where)

    def _on_conflict(self, statement: Insert) -> None:
        clause = statement._post_values_clause
        if isinstance(clause, PgOnConflictDoUpdate | SqliteOnConflictDoUpdate):
            conditions = self.criteria(statement.table)
            if conditions and clause.update_whereclause is not None:
                conditions.insert(0, clause.update_whereclause)
            if conditions:
                clause.update_whereclause = and_(*conditions)

    def _check_written_rows(self, statement: Insert | Update, parameters: Any) -> None:
        """Rows an INSERT writes, and values an UPDATE sets, must stay in the tenant and its cases."""
        name = _tenant_table(statement.table)
        if name is None:
            return
        inserting = isinstance(statement, Insert)
        if inserting and statement.select is not None:
            raise UnscopedQuery(f"INSERT ... SELECT into {name} cannot be checked against the scope")
        case_column = CASE_COLUMNS.get(name) if self.scope.case_ids is not None else None
        for row in _written_rows(statement, parameters):
            tenant = row.get("tenant_id", _MISSING)
            if (inserting or "tenant_id" in row) and tenant != self.scope.tenant_id:
                raise ScopeViolation(
                    f"writing {name} rows of tenant {_show(tenant)} outside scope {self.scope.tenant_id}"
                )
            if case_column is not None and (inserting or case_column in row):
                case_id = row.get(case_column, _MISSING)
                if not isinstance(case_id, str) or not self.scope.allows_case(case_id):
                    raise ScopeViolation(f"writing {name} rows of case {_show(case_id)} outside the scope")


@functools.lru_cache(maxsize=1024)
def _table_criteria(
    table: Table, tenant_id: str, case_ids: frozenset[str] | None
) -> tuple[ColumnElement[bool], ...]:
    """`_criteria` of a schema table, kept: expressions are immutable, so statements may share them."""
    return tuple(_criteria(table, tenant_id, case_ids))


def _criteria(
    from_: FromClause, tenant_id: str, case_ids: frozenset[str] | None
) -> list[ColumnElement[bool]]:
    """The scope (``tenant_id``, ``case_ids``) as conditions on ``from_`` (empty if no tenant table)."""
    name = _tenant_table(from_)
    if name is None:
        return []
    columns = from_.c
    case_column = CASE_COLUMNS.get(name) if case_ids is not None else None
    for column in ("tenant_id", case_column):
        if column is not None and column not in columns:
            raise UnscopedQuery(f"{name} is used without its {column} column, so it cannot be scoped")
    conditions = [columns["tenant_id"] == tenant_id]
    if case_column is not None and case_ids is not None:
        if len(case_ids) == 1:  # one case (a member of one, a function on one): no expanding IN
            conditions.append(columns[case_column] == next(iter(case_ids)))
        else:
            conditions.append(columns[case_column].in_(sorted(case_ids)))
    return conditions


def _final_froms(statement: Select[Any]) -> Sequence[FromClause]:
    """What ``statement.get_final_froms()`` returns, without compiling the statement to get it.

    For Core statements the FROM list comes from `SelectState` alone, which needs no compiler;
    ``get_final_froms`` compiles the whole statement first (most of the guard's cost). ORM-enabled
    statements take the documented route.
    """
    if statement._propagate_attrs.get("compile_state_plugin", "default") != "default":
        return statement.get_final_froms()
    return SelectState(statement, None)._get_display_froms()  # type: ignore[arg-type]


def _written_rows(statement: Insert | Update, parameters: Any) -> list[dict[str, Any]]:
    """The rows an INSERT writes or the values an UPDATE sets, as column key -> plain value
    (`_MISSING` for SQL expressions); execution parameters take precedence, as they do in SQL."""
    keys = list(statement.table.c.keys())
    if statement._multi_values:
        return [
            {
                _key(k): _value(v)
                for k, v in (row.items() if isinstance(row, Mapping) else zip(keys, row, strict=True))
            }
            for batch in statement._multi_values
            for row in batch
        ]
    base = {_key(k): _value(v) for k, v in (statement._values or {}).items()}
    if isinstance(parameters, Mapping):
        parameters = [parameters]
    return [{**base, **dict(p)} for p in parameters] if parameters else [base]


def _key(key: object) -> str:
    return key if isinstance(key, str) else str(getattr(key, "key", key))


def _value(value: object) -> object:
    if isinstance(value, BindParameter):
        return value.effective_value
    return _MISSING if isinstance(value, ClauseElement) else value


def _show(value: object) -> str:
    return "(not a plain value)" if value is _MISSING else repr(value)


def _unique(froms: Iterable[FromClause]) -> Sequence[FromClause]:
    seen: dict[int, FromClause] = {}
    for from_ in froms:
        seen.setdefault(id(from_), from_)
    return list(seen.values())
