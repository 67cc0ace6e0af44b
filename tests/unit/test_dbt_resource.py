"""The dbt resource knows its dbt version without starting dbt: dagster-dbt would otherwise run
`dbt --version` (a whole dbt start and a PyPI lookup) before every build of every sync cycle."""

from __future__ import annotations

from importlib.metadata import version

import dagster_dbt.core.resource as dbt_resource

from orchestration.lib.dbt import LocalDbtCliResource, dbt_executable, dbt_project


def _resource(executable: str) -> LocalDbtCliResource:
    return LocalDbtCliResource(project_dir=str(dbt_project.project_dir), profiles_dir=str(dbt_project.profiles_dir),
                               dbt_executable=executable)


def test_the_environments_dbt_version_is_read_without_a_subprocess(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran a subprocess: {args}")

    monkeypatch.setattr(dbt_resource, "check_output", no_subprocess)
    assert str(_resource(dbt_executable())._cli_version) == version("dbt-core")


def test_another_dbt_executable_is_still_asked(monkeypatch, tmp_path):
    other = tmp_path / "dbt"
    other.write_text("#!/bin/sh\necho 'Core:\n  - installed: 9.8.7'\n")
    other.chmod(0o755)
    calls = []

    def fake(args, **kwargs):
        calls.append(args)
        return b"Core:\n  - installed: 9.8.7\n"

    monkeypatch.setattr(dbt_resource, "check_output", fake)
    assert str(_resource(str(other))._cli_version) == "9.8.7"
    assert calls == [[str(other), "--version"]]


def test_no_in_process_adapter_is_built_before_a_build(monkeypatch):
    """dagster-dbt would load the project's macros into an in-process adapter before every build, for
    metadata helpers this project does not call."""
    import dbt.adapters.factory as factory

    def no_adapter(*args, **kwargs):
        raise AssertionError("built an in-process dbt adapter")

    monkeypatch.setattr(factory, "register_adapter", no_adapter)
    assert _resource(dbt_executable())._initialize_dbt_core_adapter(["build"]) is None


def test_each_connection_keeps_its_own_saved_parse(tmp_path):
    """Two instances on one checkout (different ports) must not make each other parse the project in full:
    the parse a build left behind is handed to the next build for the same connection only."""
    from orchestration.lib.dbt import seed_partial_parse

    cache = tmp_path / "cache"
    first, second, other = tmp_path / "run-1", tmp_path / "run-2", tmp_path / "run-other"
    seed_partial_parse(first, cache, identity="port=5001")
    assert not (first / "partial_parse.msgpack").exists()  # nothing saved yet: dagster-dbt's default applies
    first.mkdir(parents=True, exist_ok=True)
    (first / "partial_parse.msgpack").write_bytes(b"parse made for 5001")  # what dbt leaves behind

    seed_partial_parse(other, cache, identity="port=5002")  # another home in between
    other.mkdir(parents=True, exist_ok=True)
    (other / "partial_parse.msgpack").write_bytes(b"parse made for 5002")
    seed_partial_parse(second, cache, identity="port=5001")
    assert (second / "partial_parse.msgpack").read_bytes() == b"parse made for 5001"

    third = tmp_path / "run-3"
    seed_partial_parse(third, cache, identity="port=5002")
    assert (third / "partial_parse.msgpack").read_bytes() == b"parse made for 5002"


def test_old_run_target_directories_are_pruned(tmp_path):
    """Every dbt invocation leaves a target directory behind; without pruning a deployment fills its disk.
    The newest and the recent ones stay (a run may still use them), and nothing else is touched."""
    import os

    from orchestration.lib.dbt import prune_run_targets

    now = 1_000_000.0
    made = []
    for n in range(30):
        path = tmp_path / f"warehouse_models-{n:07x}-abcdef{n % 10}"
        path.mkdir()
        (path / "run_results.json").write_text("{}")
        age = 7200 if n < 25 else 60  # the last five are recent
        os.utime(path, (now - age - (30 - n), now - age - (30 - n)))
        made.append(path)
    for keep in ("partial-parse", "compiled", "run"):
        (tmp_path / keep).mkdir()
        os.utime(tmp_path / keep, (0, 0))
    bare = tmp_path / "1234abc"  # an invocation outside a Dagster run
    bare.mkdir()
    os.utime(bare, (0, 0))

    deleted = prune_run_targets(tmp_path, keep=20, min_age=3600, now=now)

    assert set(deleted) == set(made[:10]) | {bare}
    assert all(p.exists() for p in made[10:])  # the newest 20, the recent five among them
    assert all((tmp_path / keep).exists() for keep in ("partial-parse", "compiled", "run"))
    # with fewer than `keep` old ones, nothing goes; a recent one is kept even beyond `keep`
    assert prune_run_targets(tmp_path, keep=20, min_age=3600, now=now) == []
    assert prune_run_targets(tmp_path, keep=0, min_age=3600, now=now) == [p for p in reversed(made[10:25])]
    assert all(p.exists() for p in made[25:])


def test_quick_builds_may_keep_only_views_made_of_views_and_sources():
    """A view over a table is dropped when dbt replaces that table (CASCADE), so it is never kept."""
    from orchestration.lib.dbt import view_models

    def model(name, materialized, *parents):
        return f"model.p.{name}", {"resource_type": "model", "name": name, "schema": "s",
                                   "config": {"materialized": materialized},
                                   "depends_on": {"nodes": [f"model.p.{p}" if p != "src" else "source.p.raw.t"
                                                            for p in parents]}}

    manifest = {"nodes": dict([
        model("stg", "view", "src"), model("stg_on_stg", "view", "stg"), model("tbl", "table", "stg"),
        model("view_on_table", "view", "tbl"), model("eph", "ephemeral", "tbl"), model("view_on_eph", "view", "eph"),
        model("inc", "incremental", "stg"), model("view_on_inc", "view", "inc", "stg"),
    ])}
    assert sorted(key.path[-1] for key in view_models(manifest)) == ["stg", "stg_on_stg"]
