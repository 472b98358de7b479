"""The scope guard on SQLite and the real PostgreSQL: a query that forgot its scope raises or stays
inside the scope, never returns or changes another tenant's or case's rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from alembic import command
from sqlalchemy import (
    Table,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
    text,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from aima.access.scope import Scope
from aima.storage import scoped as scoped_module
from aima.storage.relational import Database, alembic_config
from aima.storage.schema import (
    audit_heads,
    audit_log,
    case_members,
    cases,
    config_entries,
    jobs,
    media,
    processed_events,
    tenants,
    users,
)
from aima.storage.scoped import ScopeViolation, UnscopedQuery, guard, scoped_session, unscoped_session

REUSED = select(cases.c.id)  # one statement object shared by every scope


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated, guarded database; the shared PostgreSQL one is downgraded to empty afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('guard') / 'aima.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    database = Database(url, pool_size=2)
    database.migrate()
    guard(database)
    yield database
    if request.param == "postgresql":
        with database.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
    database.dispose()


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class World:
    """Tenants a and b, each with a user and cases full (one media, one job) and empty (nothing)."""

    a: str = field(default_factory=new_id)
    b: str = field(default_factory=new_id)
    cases: dict[str, dict[str, str]] = field(default_factory=dict)  # tenant -> {"full"|"empty": case}
    media: dict[str, str] = field(default_factory=dict)  # tenant -> media id of its full case
    jobs: dict[str, str] = field(default_factory=dict)  # tenant -> job id of its full case
    users: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def world(db: Database) -> World:
    """Seeded over a plain engine connection, which the guard leaves alone (as migrations need)."""
    w = World()
    with db.engine.begin() as c:
        for tenant in (w.a, w.b):
            user, full, empty, medium, job = (new_id() for _ in range(5))
            c.execute(insert(tenants).values(id=tenant, name=f"tenant-{tenant}"))
            c.execute(insert(users).values(id=user, tenant_id=tenant, username=f"u-{user}", role="user"))
            for case_id in (full, empty):
                c.execute(insert(cases).values(id=case_id, tenant_id=tenant, name=f"case-{case_id}"))
                c.execute(
                    insert(case_members).values(case_id=case_id, user_id=user, tenant_id=tenant, role="owner")
                )
            c.execute(insert(media).values(media_row(medium, tenant, full)))
            c.execute(
                insert(jobs).values(id=job, tenant_id=tenant, case_id=full, media_id=medium, state="pending")
            )
            w.users[tenant], w.cases[tenant], w.media[tenant], w.jobs[tenant] = (
                user,
                {"full": full, "empty": empty},
                medium,
                job,
            )
    return w


def media_row(media_id: str, tenant: str, case_id: str) -> dict[str, object]:
    return {
        "id": media_id,
        "tenant_id": tenant,
        "case_id": case_id,
        "sha256": uuid.uuid4().hex * 2,
        "size": 1,
        "content_type": "video/mp4",
        "object_key": f"{case_id}/{media_id}",
    }


def tenant_scope(tenant: str) -> Scope:
    return Scope.for_tenant(tenant, "test")


def raw_ids(db: Database, tbl: Table, tenant: str) -> set[str]:
    """Ids of a tenant's rows, read past the guard."""
    with db.engine.connect() as c:
        return set(c.scalars(select(tbl.c.id).where(tbl.c.tenant_id == tenant)))


# --- no scope ------------------------------------------------------------------------------


@pytest.mark.parametrize("tbl", [cases, media, jobs, case_members, users, audit_log, audit_heads])
def test_an_unscoped_select_on_a_tenant_table_raises(db: Database, tbl: Table) -> None:
    with pytest.raises(UnscopedQuery, match=tbl.name), db.session() as s:
        s.execute(select(tbl))


def test_unscoped_changes_and_counts_raise_too(db: Database, world: World) -> None:
    statements = [
        select(func.count()).select_from(cases),
        select(processed_events.c.event_id).where(processed_events.c.consumer.in_(select(users.c.username))),
        update(cases).values(name="x"),
        delete(media),
        # a table without tenants, changed where a tenant table says so: UPDATE ... FROM cases
        update(processed_events).where(processed_events.c.event_id == cases.c.id).values(consumer="x"),
        delete(processed_events).where(processed_events.c.event_id == media.c.id),
        insert(cases).values(id=new_id(), tenant_id=world.a, name="x"),
    ]
    for statement in statements:
        with pytest.raises(UnscopedQuery), db.session() as s:
            s.execute(statement)
    assert len(raw_ids(db, cases, world.a)) == 2


def test_tables_without_tenants_stay_usable_unscoped(db: Database, world: World) -> None:
    with db.session() as s:
        assert s.scalar(select(tenants.c.name).where(tenants.c.id == world.a)) == f"tenant-{world.a}"
        assert db.claim_event(s, "guard-test", new_id()) is True
        s.execute(select(config_entries)).all()
        assert s.execute(text("SELECT 1")).scalar() == 1


def test_an_unscoped_session_is_explicit_and_crosses_tenants(db: Database, world: World) -> None:
    with pytest.raises(ValueError, match="reason"), unscoped_session(db, reason=" "):
        pass
    with unscoped_session(db, reason="login by username") as s:
        found = set(s.scalars(select(users.c.tenant_id).where(users.c.id.in_(world.users.values()))))
    assert found == {world.a, world.b}


# --- scoped reads ------------------------------------------------------------------------


@pytest.mark.parametrize("tbl", [cases, media, jobs])
def test_a_scoped_select_without_where_returns_only_the_tenant_rows(
    db: Database, world: World, tbl: Table
) -> None:
    with scoped_session(db, tenant_scope(world.a)) as s:
        rows = s.execute(select(tbl)).mappings().all()
    assert {row["id"] for row in rows} == raw_ids(db, tbl, world.a)
    assert {row["tenant_id"] for row in rows} == {world.a}


@pytest.mark.parametrize(("tbl", "expected"), [(cases, "case"), (media, "media"), (jobs, "job")])
def test_a_case_scope_returns_only_that_case(db: Database, world: World, tbl: Table, expected: str) -> None:
    full = world.cases[world.a]["full"]
    ids = {"case": {full}, "media": {world.media[world.a]}, "job": {world.jobs[world.a]}}[expected]
    with scoped_session(db, Scope.for_case(world.a, full, "worker")) as s:
        assert set(s.scalars(select(tbl.c.id))) == ids
    with scoped_session(db, Scope.for_case(world.a, world.cases[world.b]["full"], "worker")) as s:
        assert s.execute(select(tbl)).all() == []  # another tenant's case is no way in
    with scoped_session(db, Scope(world.a, frozenset(), "nobody")) as s:
        assert s.execute(select(tbl)).all() == []


def test_one_statement_object_serves_every_scope(db: Database, world: World) -> None:
    for tenant in (world.a, world.b, world.a):
        with scoped_session(db, tenant_scope(tenant)) as s:
            assert set(s.scalars(REUSED)) == set(world.cases[tenant].values())
    assert "WHERE" not in str(REUSED)  # the guard rewrote a copy


def test_joins_subqueries_unions_and_aliases_are_confined(db: Database, world: World) -> None:
    a, b = world.cases[world.a], world.cases[world.b]
    aliased = cases.alias("c")
    with scoped_session(db, tenant_scope(world.a)) as s:
        assert set(s.execute(select(cases.c.id, media.c.id).join_from(cases, media))) == {
            (a["full"], world.media[world.a])
        }
        assert set(s.execute(select(cases.c.id, media.c.id).join(media))) == {
            (a["full"], world.media[world.a])
        }
        assert set(s.execute(select(cases.c.id, media.c.id).outerjoin_from(cases, media))) == {
            (a["full"], world.media[world.a]),
            (a["empty"], None),
        }
        assert set(s.scalars(select(media.c.id).where(media.c.case_id.in_(select(cases.c.id))))) == {
            world.media[world.a]
        }
        has_media = exists(select(media.c.id).where(media.c.case_id == cases.c.id))
        assert set(s.scalars(select(cases.c.id).where(has_media))) == {a["full"]}
        per_case = select(func.count()).where(media.c.case_id == cases.c.id).scalar_subquery()
        assert {case_id: n for case_id, n in s.execute(select(cases.c.id, per_case))} == {
            a["full"]: 1,
            a["empty"]: 0,
        }
        assert set(s.scalars(union(select(cases.c.id), select(media.c.id)))) == {
            *a.values(),
            world.media[world.a],
        }
        assert set(s.scalars(select(aliased.c.id))) == set(a.values())
        assert s.scalar(select(func.count()).select_from(cases)) == 2
        assert s.scalar(select(func.count()).select_from(cases).where(cases.c.id == b["full"])) == 0
        lightweight = table("cases", column("id"), column("tenant_id"))
        assert set(s.scalars(select(lightweight.c.id))) == set(a.values())


def test_an_outer_join_does_not_pick_up_a_foreign_row(db: Database, world: World) -> None:
    """A row of another tenant that points at our case (a bug elsewhere) stays invisible."""
    intruder_tenant, intruder = new_id(), new_id()
    empty = world.cases[world.a]["empty"]
    with db.engine.begin() as c:
        c.execute(insert(media).values(media_row(intruder, intruder_tenant, empty)))
    with scoped_session(db, tenant_scope(world.a)) as s:
        pairs = set(s.execute(select(cases.c.id, media.c.id).outerjoin_from(cases, media)))
        pairs |= set(s.execute(select(cases.c.id, media.c.id).outerjoin(media)))  # join built at compile time
        exposed = set(s.execute(select(media.c.id).where(media.c.case_id == empty)))
        updated = s.execute(update(cases).where(cases.c.id == media.c.case_id).values(status="has-media"))
    assert (empty, None) in pairs
    assert (empty, intruder) not in pairs
    assert exposed == set()
    assert updated.rowcount == 1  # UPDATE ... FROM media: only the case with its own media
    with db.engine.connect() as c:
        assert c.scalar(select(cases.c.status).where(cases.c.id == empty)) == "open"


# --- scoped writes -----------------------------------------------------------------------


def test_update_and_delete_without_where_touch_only_the_scope(db: Database, world: World) -> None:
    with scoped_session(db, tenant_scope(world.a)) as s:
        assert s.execute(update(cases).values(name="renamed")).rowcount == 2
        assert s.execute(delete(jobs)).rowcount == 1
    with scoped_session(db, Scope.for_case(world.b, world.cases[world.b]["empty"], "worker")) as s:
        assert s.execute(delete(media)).rowcount == 0  # b's media belongs to its other case
    with db.engine.connect() as c:
        query = select(cases.c.id, cases.c.name).where(cases.c.tenant_id.in_([world.a, world.b]))
        names = {case_id: name for case_id, name in c.execute(query)}
    assert {names[case_id] for case_id in world.cases[world.a].values()} == {"renamed"}
    assert {names[case_id] for case_id in world.cases[world.b].values()} != {"renamed"}
    assert raw_ids(db, jobs, world.a) == set()
    assert raw_ids(db, jobs, world.b) == {world.jobs[world.b]}
    assert raw_ids(db, media, world.b) == {world.media[world.b]}


def test_update_cannot_move_rows_out_of_the_scope(db: Database, world: World) -> None:
    with pytest.raises(ScopeViolation, match="tenant"), scoped_session(db, tenant_scope(world.a)) as s:
        s.execute(update(cases).values(tenant_id=world.b))
    full, empty = world.cases[world.a]["full"], world.cases[world.a]["empty"]
    with (
        pytest.raises(ScopeViolation, match="case"),
        scoped_session(db, Scope.for_case(world.a, full, "w")) as s,
    ):
        s.execute(update(media).values(case_id=empty))
    assert raw_ids(db, cases, world.a) == set(world.cases[world.a].values())


def test_an_insert_into_another_tenant_raises(db: Database, world: World) -> None:
    intruder = new_id()
    with pytest.raises(ScopeViolation, match=world.b), scoped_session(db, tenant_scope(world.a)) as s:
        s.execute(insert(cases).values(id=intruder, tenant_id=world.b, name="intruder"))
    rows = [
        {"id": new_id(), "tenant_id": world.a, "name": "fine"},
        {"id": intruder, "tenant_id": world.b, "name": "intruder"},
    ]
    with pytest.raises(ScopeViolation), scoped_session(db, tenant_scope(world.a)) as s:
        s.execute(insert(cases), rows)  # executemany: one bad row refuses the statement
    with pytest.raises(ScopeViolation), scoped_session(db, tenant_scope(world.a)) as s:
        s.execute(insert(cases).values(rows))  # multi-VALUES
    with (
        pytest.raises(ScopeViolation, match="not a plain value"),
        scoped_session(db, tenant_scope(world.a)) as s,
    ):
        s.execute(insert(cases).values(id=intruder, tenant_id=literal(world.a) + "", name="expression"))
    with pytest.raises(ScopeViolation), scoped_session(db, tenant_scope(world.a)) as s:
        s.execute(insert(cases).values(id=intruder, name="no tenant"))
    assert raw_ids(db, cases, world.a) == set(world.cases[world.a].values())
    assert raw_ids(db, cases, world.b) == set(world.cases[world.b].values())


def test_an_insert_outside_the_case_scope_raises(db: Database, world: World) -> None:
    full, empty = world.cases[world.a]["full"], world.cases[world.a]["empty"]
    scope = Scope.for_case(world.a, full, "worker")
    with pytest.raises(ScopeViolation, match="case"), scoped_session(db, scope) as s:
        s.execute(insert(media).values(media_row(new_id(), world.a, empty)))
    with pytest.raises(ScopeViolation), scoped_session(db, scope) as s:
        s.execute(insert(cases).values(id=new_id(), tenant_id=world.a, name="new case outside the scope"))
    with scoped_session(db, scope) as s:
        s.execute(insert(media).values(media_row(new_id(), world.a, full)))
    assert len(raw_ids(db, media, world.a)) == 2


def test_an_upsert_cannot_overwrite_another_tenants_row(db: Database, world: World) -> None:
    victim = world.cases[world.b]["full"]
    with scoped_session(db, tenant_scope(world.a)) as s:
        dialect_insert = sqlite_insert if s.get_bind().dialect.name == "sqlite" else pg_insert
        upsert = dialect_insert(cases).values(id=victim, tenant_id=world.a, name="hijacked")
        s.execute(upsert.on_conflict_do_update(index_elements=[cases.c.id], set_={"name": "hijacked"}))
    with db.engine.connect() as c:
        assert c.execute(select(cases.c.tenant_id, cases.c.name).where(cases.c.id == victim)).one() == (
            world.b,
            f"case-{victim}",
        )


# --- what cannot be confined ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    ["SELECT id FROM cases", "select count(*) from MEDIA", "DELETE FROM jobs", "SELECT * FROM audit_log"],
)
def test_raw_sql_on_tenant_tables_raises_in_any_session(db: Database, world: World, sql: str) -> None:
    with pytest.raises(UnscopedQuery, match="raw SQL"), scoped_session(db, tenant_scope(world.a)) as s:
        s.execute(text(sql))
    with pytest.raises(UnscopedQuery), db.session() as s:
        s.execute(text(sql))
    assert raw_ids(db, jobs, world.a) == {world.jobs[world.a]}


def test_other_unconfinable_statements_raise(db: Database, world: World) -> None:
    scope = tenant_scope(world.a)
    statements = [
        select(literal_column("(SELECT count(*) FROM cases)")),
        select(cases.c.id).join_from(cases, media, full=True),
        insert(cases).from_select(
            ["id", "tenant_id", "name"], select(media.c.id, media.c.tenant_id, media.c.sha256)
        ),
        select(table("cases", column("id")).c.id),  # no tenant_id column to filter on
        select(literal(1)).add_cte(delete(jobs).returning(jobs.c.id).cte()),
    ]
    for statement in statements:
        with pytest.raises(UnscopedQuery), scoped_session(db, scope) as s:
            s.execute(statement)
    assert raw_ids(db, jobs, world.a) == {world.jobs[world.a]}


def test_the_sessions_connection_is_no_way_around(db: Database, world: World) -> None:
    with pytest.raises(UnscopedQuery, match="bypassed"), scoped_session(db, tenant_scope(world.a)) as s:
        s.connection().execute(select(cases))
    with pytest.raises(UnscopedQuery, match="bypassed"), db.session() as s:
        s.connection().exec_driver_sql("SELECT id FROM cases")
    with scoped_session(db, tenant_scope(world.a)) as s:
        assert s.connection().execute(select(tenants.c.id).where(tenants.c.id == world.a)).scalar() == world.a


def test_a_scoped_session_is_one_transaction(db: Database, world: World) -> None:
    def delete_then_fail() -> None:
        with scoped_session(db, tenant_scope(world.a)) as s:
            s.execute(delete(jobs))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        delete_then_fail()
    assert raw_ids(db, jobs, world.a) == {world.jobs[world.a]}


# --- the flat fast path ----------------------------------------------------------------------


FLAT = [
    select(cases),
    select(cases.c.id).where(cases.c.id == "c1").order_by(cases.c.name).limit(3),
    select(media.c.id, cases.c.name).where(media.c.case_id == cases.c.id),
    select(case_members.c.case_id).where(case_members.c.user_id == "u1"),
    update(cases).where(cases.c.id == "c1").values(name="renamed"),
    delete(media).where(media.c.id == "m1"),
]
NOT_FLAT = [
    select(cases.c.id).join(media),  # join built at compile time
    select(cases.alias().c.id),
    select(func.count()).select_from(cases),
    select(cases.c.id).where(cases.c.id.in_(select(media.c.case_id))),
    update(cases).where(cases.c.id == media.c.case_id).values(status="x"),
    delete(processed_events).where(processed_events.c.event_id == media.c.id),
]


@pytest.mark.parametrize("statement", FLAT + NOT_FLAT, ids=lambda s: str(s).split("\n")[0][:40])
@pytest.mark.parametrize("scope", [Scope("t1", None, "a"), Scope("t1", frozenset({"c1", "c2"}), "a")])
def test_the_flat_fast_path_writes_what_the_general_rewrite_writes(statement: Any, scope: Scope) -> None:
    """Flat statements skip the copy of the whole tree; the SQL they run is the same."""
    names, flat = scoped_module._survey(statement)
    assert names
    assert flat == any(statement is s for s in FLAT)
    confiner = scoped_module._Confiner(scope)
    fast = confiner.confine(statement, None, flat=flat)
    general = confiner.confine(statement, None, flat=False)
    compiled = [str(s.compile(compile_kwargs={"literal_binds": True})) for s in (fast, general)]
    assert compiled[0] == compiled[1]
    assert "'t1'" in compiled[0]
    assert ("'c1', 'c2'" in compiled[0]) == (scope.case_ids is not None)  # every one names a case table
