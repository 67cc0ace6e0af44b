"""I-8: the dbt valuation (FIFO and AVCO) equals the independent Python reference on generated histories.

Hypothesis generates the histories; all of them are loaded as distinct SKUs and valued by ONE
`dbt build`, then every valued movement, cost-of-goods line and open layer is compared with the
reference by exact `Decimal` equality on the unrounded `numeric` values (no tolerance, not even a cent).
The dbt unit tests of the valuation pass run in their own test below.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings

from tests.valuation.valuation_harness import (
    POSITIONS_BUILD,
    VALUATION_BUILD,
    compare,
    history,
    load_histories,
)

pytestmark = pytest.mark.integration

# The builds here check the valuation against the reference; its dbt unit tests run separately.
BUILD = ("build", "--select", *VALUATION_BUILD, "--exclude", "test_type:unit")


def _collect(n_examples: int | None = None) -> list[list[dict]]:
    """Run Hypothesis to collect histories; no database work per example (they are built together)."""
    collected: list[list[dict]] = []

    @given(history())
    def collect(rows):
        collected.append(rows)

    if n_examples is not None:
        collect = settings(max_examples=n_examples)(collect)
    collect()
    return collected


def _report(problems: list[str]) -> str:
    return f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:40])


def test_marts_equal_reference(warehouse, dbt, load_file_rows):
    histories = _collect()
    skus = load_histories(load_file_rows, histories)
    dbt("build", "--select", *POSITIONS_BUILD, "--exclude", "test_type:unit")
    with warehouse.connect("transformer") as conn:
        problems = compare(conn, skus[0].rsplit("-", 1)[0], positions=True)
    assert not problems, _report(problems)


def test_back_dated_events_revalue_everything_after_them(warehouse, dbt, load_file_rows):
    """Events that arrive in a later batch, many of them back-dated before already valued ones, give
    exactly what valuing the whole history at once gives (rule 2)."""
    histories = _collect(20)
    early = [rows[: len(rows) // 2] for rows in histories]
    late = [rows[len(rows) // 2 :] for rows in histories]
    skus = load_histories(load_file_rows, early)
    prefix = skus[0].rsplit("-", 1)[0]
    dbt(*BUILD)
    load_histories(load_file_rows, late, prefix=prefix)
    dbt(*BUILD)
    with warehouse.connect("transformer") as conn:
        problems = compare(conn, prefix)
    assert not problems, _report(problems)


def _can_create_temporary_tables(warehouse) -> bool:
    with warehouse.connect("transformer") as conn:
        return conn.execute("select has_database_privilege(current_database(), 'TEMPORARY')").fetchone()[0]


def test_incremental_build_equals_full_refresh(warehouse, dbt, load_file_rows):
    """With var valuation_incremental (and the project's checkpoint settings), a build after a batch of
    late (back-dated) events re-values only the SKUs it touches, each from a checkpoint or its start, and
    gives exactly what a full refresh (and the reference) gives."""
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres incremental builds need it")
    incremental = (*BUILD, "--vars", "{valuation_incremental: true}")
    histories = _collect(20)
    early = [rows[: len(rows) // 2] for rows in histories]
    late = [rows[len(rows) // 2 :] for rows in histories]
    skus = load_histories(load_file_rows, early)
    prefix = skus[0].rsplit("-", 1)[0]
    dbt(*incremental, "--full-refresh")
    load_histories(load_file_rows, late[: len(late) // 2], prefix=prefix)  # touches half the SKUs
    dbt(*incremental)
    with warehouse.connect("transformer") as conn:
        problems = compare(conn, prefix)
    assert not problems, _report(problems)


def _start_indexes(conn) -> int:
    return conn.execute(
        "select count(*) from pg_indexes where schemaname = 'intermediate' and tablename = 'int_valuation_entries_posted'"
        " and indexdef like '%valuation_sequence = 1%'"
    ).fetchone()[0]


def test_a_sku_that_leaves_the_ledger_leaves_the_valuation(warehouse, dbt, load_file_rows):
    """An incremental build deletes the entries of a SKU no longer in the ledger, found through the partial
    index on each SKU's first position and checkpoints (one on the table, whichever way it was built), and
    leaves a tombstone (a state entry at position 0, for the marts to learn it from), once; every other
    SKU's entries stay as they were: not rewritten."""
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres incremental builds need it")
    incremental = (*BUILD, "--vars", RESUME_VARS)
    skus = load_histories(load_file_rows, _collect(4))
    prefix = skus[0].rsplit("-", 1)[0]
    dbt(*incremental, "--full-refresh")
    stamps = f"select sku, entry_kind, valuation_sequence, coalesce(line_sequence, 0), xmin::text from {ENTRIES} where sku like %s"  # noqa: S608 - the test's own table name
    with warehouse.connect("transformer") as conn:
        assert _start_indexes(conn) == 1
        before = set(conn.execute(stamps, (prefix + "%",)).fetchall())
    assert {row[0] for row in before} == set(skus)
    with warehouse.admin_connect(autocommit=True) as conn:
        assert conn.execute("delete from raw.file_movements where sku = %s", (skus[0],)).rowcount > 0
    dbt(*incremental)
    with warehouse.connect("transformer") as conn:
        after_first = set(conn.execute(stamps, (prefix + "%",)).fetchall())
    dbt(*incremental)
    with warehouse.connect("transformer") as conn:
        after = set(conn.execute(stamps, (prefix + "%",)).fetchall())
        assert _start_indexes(conn) == 1
    tombstones = {row for row in after if row[0] == skus[0]}
    assert [row[1:4] for row in tombstones] == [("state", 0, 0)]
    assert after - tombstones == {row for row in before if row[0] != skus[0]}
    assert after == after_first, "the second build wrote the tombstone again"


def test_dbt_unit_tests(warehouse, dbt):
    """The dbt unit tests of the valuation pass (edge cases of DESIGN §7 on hand-checked histories),
    opt-in through var dbt_unit_tests because dbt-postgres runs them through temporary tables."""
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres unit tests need it")
    dbt("run", "--select", "int_valuation_functions_created")  # the functions the model calls
    result = dbt(
        "test",
        "--select",
        "int_valuation_entries_posted,test_type:unit",
        "--vars",
        "{dbt_unit_tests: true}",
    )
    assert "PASS=4" in result.stdout, result.stdout[-2000:]


# A checkpoint every 3 positions among the last 18: the hand-made histories get them throughout, the
# generated ones (3 to ~60 movements) near their end, so batches meet them in every way, and events
# back-dated before the first one re-value the SKU whole.
RESUME_VARS = "{valuation_incremental: true, valuation_checkpoint_interval: 3, valuation_checkpoints: 6}"
ENTRIES = "intermediate.int_valuation_entries_posted"
# what a checkpoint holds may differ between an incremental build and a full refresh (checkpoints kept
# from earlier builds), and when an entry was written: the valuation's entries may not
NOT_COMPARED = ("sku_fingerprint", "engine_state", "valued_at")


def _entry_columns(conn) -> list[str]:
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = 'intermediate'"
        " and table_name = 'int_valuation_entries_posted' order by ordinal_position"
    ).fetchall()
    return [r[0] for r in rows]


def _entries_as_text(conn, table: str, prefix: str, columns: list[str]) -> Counter:
    """The movement, cost_line and open_layer entries of these SKUs, each row as text (numeric values with
    their scale), as a multiset."""
    compared = ", ".join(c for c in columns if c not in NOT_COMPARED)
    rows = conn.execute(
        f"select row({compared})::text from {table} where sku like %s and entry_kind <> 'state'", (prefix + "%",)  # noqa: S608 - the test's own table names
    ).fetchall()
    return Counter(r[0] for r in rows)


def _apply_batch(warehouse, load_file_rows, batches: dict[str, list | dict], prefix: str) -> None:
    """Land each SKU's batch (sku name -> rows, or a dict that also changes / removes loaded rows)."""
    rows = []
    for sku, batch in batches.items():
        if isinstance(batch, dict):
            with warehouse.admin_connect(autocommit=True) as conn:
                for eid, qty in batch.get("update", {}).items():
                    changed = conn.execute(
                        "update raw.file_movements set quantity = %s where sku = %s and event_id = %s",
                        (qty, sku, f"{sku}/{eid}"),
                    ).rowcount
                    assert changed == 1, (sku, eid)
                for eid in batch.get("delete", []):
                    removed = conn.execute(
                        "delete from raw.file_movements where sku = %s and event_id = %s", (sku, f"{sku}/{eid}")
                    ).rowcount
                    assert removed == 1, (sku, eid)
            batch = batch.get("rows", [])
        rows.extend({**r, "sku": sku, "event_id": f"{sku}/{r['event_id']}",
                     "reference": r["reference"] and f"{sku}/{r['reference']}"} for r in batch)
    if rows:
        load_file_rows("movements", rows)


def test_incremental_resume_equals_full_refresh(warehouse, dbt, load_file_rows):
    """Incremental builds resume each touched SKU from a checkpoint (RESUME_VARS) and give, after each of several batches in a row, exactly the entries a full refresh gives (as text:
    values and numeric scales), and the reference's values. Batches: generated histories' later parts
    (after and back-dated), and hand-made ones (tests/valuation/resume_scenarios.py): all after the history,
    back-dated into the middle, returns referencing a sale / receipt far before the checkpoint, transfers
    whose pair straddles it, negative stock open at it settled later, old rows changed and removed."""
    from tests.valuation.resume_scenarios import scenarios

    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres incremental builds need it")
    incremental = (*BUILD, "--vars", RESUME_VARS)
    full_refresh = ("run", "--select", "int_valuation_entries_posted", "--full-refresh", "--vars", RESUME_VARS)

    generated = _collect(30)
    made = scenarios()
    names = list(made)
    cuts = [(len(rows) * 2 // 5, len(rows) * 7 // 10) for rows in generated]
    early = [rows[:a] for rows, (a, _) in zip(generated, cuts, strict=True)] + [made[n][0] for n in names]
    skus = load_histories(load_file_rows, early)
    prefix = skus[0].rsplit("-", 1)[0]
    generated_skus, made_skus = skus[: len(generated)], dict(zip(names, skus[len(generated):], strict=True))
    rounds = [
        {sku: rows[a:b] for sku, rows, (a, b) in zip(generated_skus, generated, cuts, strict=True)},
        {sku: rows[b:] for sku, rows, (_, b) in zip(generated_skus, generated, cuts, strict=True)},
        {},
        {},
    ]
    for k, batches in enumerate(rounds):
        batches.update({made_skus[n]: made[n][1][k] for n in names})

    dbt(*incremental, "--full-refresh")
    saved = f"intermediate.resume_test_{prefix.rsplit('-', 1)[1]}"
    resumed_total = 0
    for k, batches in enumerate(rounds):
        _apply_batch(warehouse, load_file_rows, batches, prefix)
        dbt(*incremental)
        with warehouse.connect("transformer") as conn, conn.transaction():
            columns = _entry_columns(conn)
            conn.execute(f"drop table if exists {saved}")
            conn.execute(
                f"create table {saved} as select *, xmin::text as written_by from {ENTRIES} where sku like %s",  # noqa: S608 - the test's own table names
                (prefix + "%",),
            )
            incremental_entries = _entries_as_text(conn, saved, prefix, columns)
            # SKUs re-valued from a checkpoint: their last state entry was written by this build, and
            # some of their movement entries were kept from before
            resumed = dict(conn.execute(
                f"select s.sku, min(m.valuation_sequence) filter (where m.written_by = s.written_by)"  # noqa: S608 - the test's own table names
                f" from {saved} as s join {saved} as m on m.sku = s.sku and m.entry_kind = 'movement'"
                f" where s.entry_kind = 'state' and s.valuation_sequence = (select max(valuation_sequence)"
                f"   from {saved} as e where e.sku = s.sku and e.entry_kind = 'state')"
                f" group by s.sku, s.written_by"
                f" having bool_or(m.written_by <> s.written_by) and bool_or(m.written_by = s.written_by)"
            ).fetchall())
        resumed_total += len(resumed)
        if k == 0:  # everything after the history, one checkpoint before: resumed, not re-valued whole
            assert made_skus["after_history"] in resumed, resumed
            assert made_skus["back_dated"] in resumed, resumed
        dbt(*full_refresh)
        with warehouse.connect("transformer") as conn:
            full_entries = _entries_as_text(conn, ENTRIES, prefix, columns)
            problems = compare(conn, prefix)
        only_incremental = incremental_entries - full_entries
        only_full = full_entries - incremental_entries
        assert not only_incremental and not only_full, (
            f"round {k + 1}: {sum(only_incremental.values())} entries only in the incremental build, "
            f"{sum(only_full.values())} only in the full refresh; first ones:\n"
            + "\n".join(sorted(only_incremental)[:10]) + "\n---\n" + "\n".join(sorted(only_full)[:10])
        )
        assert not problems, f"round {k + 1}: " + _report(problems)
        # back to what the incremental build wrote (with its checkpoints) for the next round
        with warehouse.connect("transformer") as conn, conn.transaction():
            kept = ", ".join(columns)
            conn.execute(f"delete from {ENTRIES} where sku like %s", (prefix + "%",))  # noqa: S608 - the test's own table names
            conn.execute(f"insert into {ENTRIES} ({kept}) select {kept} from {saved}")  # noqa: S608 - the test's own table names
            conn.execute(f"drop table {saved}")
    assert resumed_total >= len(rounds), "the incremental builds hardly ever resumed from a checkpoint"


MARTS = ("fct_inventory_valuation", "fct_cost_of_goods", "fct_cost_layers")


def _marts_as_text(conn, prefix: str) -> dict[str, Counter]:
    """The valuation marts' rows of these SKUs, each as text (values and numeric scales) but for when they were
    valued, as multisets."""
    return {
        mart: Counter(r[0] for r in conn.execute(
            f"select (to_jsonb(m) - 'valued_at')::text from marts.{mart} as m where sku like %s",  # noqa: S608 - the test's own names
            (prefix + "%",),
        ).fetchall())
        for mart in MARTS
    }


def test_incremental_marts_equal_full_refresh(warehouse, dbt, load_file_rows):
    """The valuation marts follow the valuation incrementally (macros/valuation/valuation_catch_up.sql): after
    several incremental builds in a row (later and back-dated batches resumed from checkpoints, a SKU leaving
    the ledger, then coming back; once the valuation is built alone, so that the marts catch up with two of
    its builds), they hold exactly, as text, what a full refresh gives, and the reference's values; the rows
    of SKUs a batch left alone are not written again."""
    if not _can_create_temporary_tables(warehouse):
        pytest.skip("transformer lacks TEMPORARY on the database; dbt-postgres incremental builds need it")
    incremental = (*BUILD, "--vars", RESUME_VARS)
    generated = _collect(16)
    cuts = [(len(rows) // 3, len(rows) * 2 // 3) for rows in generated]
    skus = load_histories(load_file_rows, [rows[:a] for rows, (a, _) in zip(generated, cuts, strict=True)])
    prefix = skus[0].rsplit("-", 1)[0]
    dbt(*incremental, "--full-refresh")
    leaving = skus[0]

    def later(sku: str, rows: list[dict]) -> list[dict]:
        return [{**r, "sku": sku, "event_id": f"{sku}/{r['event_id']}",
                 "reference": r["reference"] and f"{sku}/{r['reference']}"} for r in rows]

    def leave() -> None:
        with warehouse.admin_connect(autocommit=True) as conn:
            assert conn.execute("delete from raw.file_movements where sku = %s", (leaving,)).rowcount > 0

    middle = [(sku, later(sku, rows[a:b])) for sku, rows, (a, b) in zip(skus, generated, cuts, strict=True)]
    valuation_alone = ("run", "--select", "+int_valuation_entries_posted", "--vars", RESUME_VARS)
    rounds = [
        # half the SKUs: their middle part (later and back-dated events)
        (incremental, lambda: load_file_rows("movements", [row for _, rows in middle[::2] for row in rows])),
        # one SKU leaves the ledger
        (incremental, leave),
        # the other half: their middle part; only the valuation is built (as a quick cycle may)
        (valuation_alone, lambda: load_file_rows("movements", [row for _, rows in middle[1::2] for row in rows])),
        # the SKU comes back whole, every SKU gets its last part: the marts catch up with two valuation builds
        (incremental, lambda: load_file_rows("movements", later(leaving, generated[0][: cuts[0][1]]) + [
            row for sku, rows, (_, b) in zip(skus, generated, cuts, strict=True) for row in later(sku, rows[b:])])),
    ]
    untouched = "select sku, xmin::text from marts.fct_inventory_valuation where sku = any(%s)"
    with warehouse.connect("transformer") as conn:
        written = set(conn.execute(untouched, (skus[1::2],)).fetchall())
    assert written
    for k, (build, apply) in enumerate(rounds):
        apply()
        dbt(*build)
        if build is not incremental:
            continue
        with warehouse.connect("transformer") as conn:
            if k == 0:  # caught up, not rebuilt: the rows of the SKUs this batch left alone were not rewritten
                assert set(conn.execute(untouched, (skus[1::2],)).fetchall()) == written
            problems = compare(conn, prefix)
            gone = {mart: conn.execute(f"select count(*) from marts.{mart} where sku = %s", (leaving,)).fetchone()[0]  # noqa: S608 - the test's own names
                    for mart in MARTS}
        assert not problems, f"round {k + 1}: " + _report(problems)
        if k == 1:
            assert not any(gone.values()), f"round {k + 1}: rows of {leaving} left: {gone}"
        else:
            assert gone["fct_inventory_valuation"], f"round {k + 1}: {gone}"
    with warehouse.connect("transformer") as conn:
        incremental_marts = _marts_as_text(conn, prefix)
    dbt(*incremental, "--full-refresh")
    with warehouse.connect("transformer") as conn:
        full_marts = _marts_as_text(conn, prefix)
    for mart in MARTS:
        only_incremental = incremental_marts[mart] - full_marts[mart]
        only_full = full_marts[mart] - incremental_marts[mart]
        assert full_marts[mart] and not only_incremental and not only_full, (
            f"{mart}: {sum(only_incremental.values())} rows only after the incremental builds, "
            f"{sum(only_full.values())} only after a full refresh; first ones:\n"
            + "\n".join(sorted(only_incremental)[:5]) + "\n---\n" + "\n".join(sorted(only_full)[:5])
        )
