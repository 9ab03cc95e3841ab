"""Batch inference end to end: the service's output format, errors inline, filters, fresh users, commit
safety, run metrics, and s3a:// input and output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from datasets_helpers import SCHEMAS
from recipe_helpers import as_csv, planted
from recsys_spark.config import load_config
from recsys_spark.datasets.importer import run_imports
from recsys_spark.errors import UserError
from recsys_spark.inference import batch as batch_module
from recsys_spark.inference.batch import run_batch
from recsys_spark.core.kernels.lines import json_lines
from recsys_spark.solutions.train import train_solution

SMALL = "min_interactions: 500, min_users_with_two: 20"
PIPELINE = """
solutions:
  - {name: for-you, recipe: user-personalization, settings: {factors: 4, iterations: 8, regularization: 1.0, SMALL_},
     events: {types: {view: 1.0, buy: 3.0}}}
  - {name: similar, recipe: sims, settings: {min_cointeraction_count: 1, SMALL_}}
  - {name: rank, recipe: personalized-ranking, settings: {factors: 4, iterations: 8, regularization: 1.0, SMALL_}}
filters:
  - {name: not-bought, expression: 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("buy")'}
  - name: cheap-not-bought
    expression: >-
      INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE |
      EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("buy")
  - {name: same-genre, expression: 'INCLUDE ItemID WHERE Items.GENRES IN CurrentItem.GENRES'}
batch_jobs:
  - {name: everyone, solution: for-you, input: all_users, output: OUT_/everyone, num_results: 5, filter: not-bought}
  - {name: lines, solution: for-you, input: DATA_/lines.jsonl, output: OUT_/lines, num_results: 5,
     filter: cheap-not-bought}
  - {name: related, solution: similar, input: DATA_/related.jsonl, output: OUT_/related, num_results: 4,
     filter: same-genre}
  - {name: ranking, solution: rank, input: DATA_/ranking.jsonl, output: OUT_/ranking}
  - {name: plain, solution: for-you, input: all_users, output: OUT_/plain, num_results: 5}
  - {name: listed, solution: for-you, input: DATA_/users.jsonl, output: OUT_/listed, num_results: 5}
"""
LINES = [
    '{"userId": "a0", "filterValues": {"MAX_PRICE": "30"}}',
    '{"userId": "b1", "filterValues": {"MAX_PRICE": "1000"}}',
    '{"userId": "stranger", "filterValues": {"MAX_PRICE": "30"}}',
    '{"userId": "a2"}',
    '{"userId": 7, "filterValues": {"MAX_PRICE": "30"}}',
    '{"itemId": "A1", "filterValues": {"MAX_PRICE": "30"}}',
    'this is not json',
    '["a0"]',
    '{"userId": "a4", "filterValues": {"MAX_PRICE": "cheap"}}',
]


def items_csv(path) -> str:
    """40 items; group A items 0-9 cost 10, 10-19 cost 50; genres A or B."""
    rows = ["ITEM_ID,GENRES,PRICE,IN_STOCK,CREATION_TIMESTAMP"]
    for g in "AB":
        rows += [f"{g}{i},{g.lower()}|x,{10 if i < 10 else 50},true,1600000000" for i in range(20)]
    Path(path).write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def group(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batch")
    data, out = tmp / "data", tmp / "out"
    data.mkdir()
    (data / "lines.jsonl").write_text("\n".join(LINES) + "\n\n")
    (data / "related.jsonl").write_text('{"itemId": "A3"}\n{"itemId": "B5"}\n{"itemId": "nope"}\n{"userId": "a0"}\n')
    (data / "ranking.jsonl").write_text('{"userId": "a0", "itemList": ["B1", "A13", "ghost", "A12"]}\n'
                                        '{"userId": "nobody", "itemList": ["A1", "B2"]}\n')
    users = sorted(planted()["USER_ID"].unique())
    (data / "users.jsonl").write_text("".join(json.dumps({"userId": u}) + "\n" for u in reversed(users)))
    path = tmp / "pipeline.yaml"
    path.write_text(SCHEMAS.format(root=tmp / "warehouse") + PIPELINE.replace("SMALL_", SMALL).replace("OUT_", str(out)).replace("DATA_", str(data)))
    config = load_config(path)
    run_imports(spark, config, "interactions", as_csv(planted(), tmp / "interactions.csv"))
    run_imports(spark, config, "items", items_csv(tmp / "items.csv"))
    for name in ("for-you", "similar", "rank"):
        train_solution(spark, config, name, evaluate=False)
    return config, tmp


def manifest(folder) -> dict:
    return json.loads((Path(folder) / "_manifest.json").read_text())


def output_lines(folder) -> list[dict]:
    """The committed output's lines, read as the README tells external readers: through the manifest."""
    return [json.loads(line) for name in manifest(folder)["files"]
            for line in (Path(folder) / name).read_text().splitlines()]


def output_metrics(folder) -> dict:
    return json.loads((Path(folder) / manifest(folder)["metrics"]).read_text())


def bought(spark, config) -> dict[str, set[str]]:
    from recsys_spark.datasets.warehouse import Warehouse

    rows = Warehouse(spark, config).read("interactions").where("EVENT_TYPE = 'buy'").collect()
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.USER_ID, set()).add(r.ITEM_ID)
    return out


def test_all_users_in_the_services_format_without_seen_or_bought_items(spark, group):
    config, tmp = group
    result = run_batch(spark, config, "everyone")
    lines = output_lines(tmp / "out" / "everyone")
    assert len(lines) == 80 == result.metrics["users_in"] == result.metrics["users_served"]
    seen, own_group = {}, 0
    for r in planted().itertuples():
        seen.setdefault(r.USER_ID, set()).add(r.ITEM_ID)
    for line in lines:
        assert set(line) == {"input", "output", "error"} and line["error"] is None
        assert set(line["output"]) == {"recommendedItems", "scores"}
        user, items = line["input"]["userId"], line["output"]["recommendedItems"]
        assert len(items) == 5 and len(line["output"]["scores"]) == 5
        assert line["output"]["scores"] == sorted(line["output"]["scores"], reverse=True)
        assert not set(items) & seen[user]
        own_group += sum(i[0].lower() == user[0] for i in items)
    assert own_group / (80 * 5) > 0.85
    assert (tmp / "out" / "everyone" / "_SUCCESS").exists()


def test_all_users_without_a_filter_match_the_same_users_asked_line_by_line(spark, group):
    # all_users without a filter scores every user found in the interactions (no request rows); a file of
    # the same users takes the request path: both must give each user the same recommendations.
    config, tmp = group
    run_batch(spark, config, "plain")
    run_batch(spark, config, "listed")
    plain = {line["input"]["userId"]: line["output"] for line in output_lines(tmp / "out" / "plain")}
    listed = {line["input"]["userId"]: line["output"] for line in output_lines(tmp / "out" / "listed")}
    assert len(plain) == len(output_lines(tmp / "out" / "plain")) == 80
    assert plain.keys() == listed.keys()
    for user, out in plain.items():
        assert out["recommendedItems"] == listed[user]["recommendedItems"] and len(out["recommendedItems"]) == 5
        assert out["scores"] == pytest.approx(listed[user]["scores"])


def test_every_input_line_gets_one_output_line_with_errors_inline(spark, group):
    config, tmp = group
    result = run_batch(spark, config, "lines")
    lines = output_lines(tmp / "out" / "lines")
    assert len(lines) == len(LINES) == result.metrics["users_in"]
    by_input = {json.dumps(line["input"]): line for line in lines}
    get = lambda text: by_input[json.dumps(json.loads(text) if text.startswith(("{", "[")) else text)]  # noqa: E731
    cheap = {f"{g}{i}" for g in "AB" for i in range(10)}
    a0 = get(LINES[0])
    assert a0["error"] is None and len(a0["output"]["recommendedItems"]) == 5
    assert set(a0["output"]["recommendedItems"]) <= cheap
    assert not set(get(LINES[1])["output"]["recommendedItems"]) & bought(spark, config).get("b1", set())
    stranger = get(LINES[2])
    assert stranger["error"] is None and stranger["note"].startswith("user not known")
    assert stranger["output"]["scores"] is None and set(stranger["output"]["recommendedItems"]) <= cheap
    assert "$MAX_PRICE has no value" in get(LINES[3])["error"] or "MAX_PRICE" in get(LINES[3])["error"]
    assert get(LINES[4])["error"].startswith("userId must be a non-empty string")
    assert "itemId" in get(LINES[5])["error"] or "userId is required" in get(LINES[5])["error"]
    assert get(LINES[6])["error"].startswith("not valid JSON") and get(LINES[6])["input"] == LINES[6]
    assert get(LINES[7])["error"] == "expected a JSON object, got list"
    assert "MAX_PRICE" in get(LINES[8])["error"]
    for line in lines:
        if line["error"]:
            assert line["output"]["recommendedItems"] == []
    assert result.metrics["users_failed"] == 6 and result.metrics["users_served"] == 3


def test_related_items_follow_the_current_item_filter_and_unknown_items_fall_back(spark, group):
    config, tmp = group
    run_batch(spark, config, "related")
    lines = {json.dumps(line["input"]): line for line in output_lines(tmp / "out" / "related")}
    a3 = lines['{"itemId": "A3"}']["output"]["recommendedItems"]
    assert len(a3) == 4 and "A3" not in a3 and all(i.startswith("A") for i in a3)
    assert all(i.startswith("B") for i in lines['{"itemId": "B5"}']["output"]["recommendedItems"])
    nope = lines['{"itemId": "nope"}']
    # Popular items instead, but none passes a CurrentItem filter for an item the catalog does not know.
    assert nope["note"].startswith("item not known") and nope["error"] is None
    assert nope["output"]["recommendedItems"] == []
    assert len(lines['{"userId": "a0"}']["output"]["recommendedItems"]) == 4


def test_ranking_reorders_the_list_and_puts_unknown_items_last(spark, group):
    config, tmp = group
    run_batch(spark, config, "ranking")
    lines = {line["input"]["userId"]: line for line in output_lines(tmp / "out" / "ranking")}
    a0 = lines["a0"]["output"]
    assert sorted(a0["recommendedItems"]) == sorted(["B1", "A13", "ghost", "A12"])
    assert a0["recommendedItems"][-1] == "ghost" and a0["scores"][-1] is None
    assert a0["recommendedItems"][-2] == "B1"  # a0 prefers group A
    assert lines["nobody"]["output"]["scores"] is None


def test_metrics_file_reports_task_time_and_cost(spark, group):
    config, tmp = group
    result = run_batch(spark, config, "everyone")
    m = output_metrics(tmp / "out" / "everyone")
    assert m["users_in"] == 80 and m["num_results"] == 5 and m["items"] == 40
    assert set(m["phase_seconds"]) >= {"read", "score_and_write"}
    assert 0 < m["executor_cpu_seconds"] <= m["executor_run_seconds"] * 1.5
    assert 0 < m["executor_run_seconds"] <= m["wall_seconds"] * m["cores"]
    # Local mode: the driver is the one executor, holding the local[2] cores for the whole run.
    assert m["cores_basis"] == "executors" and m["executors"] == 1 and m["cores"] == 2
    assert 0 < m["allocated_core_hours"] <= m["wall_seconds"] * 2 / 3600 * 1.01
    assert m["estimated_cost_usd"] == pytest.approx(m["allocated_core_hours"] * 0.048, rel=1e-3)
    assert m["managed_service_cost_usd"] == pytest.approx(80 / 1000 * 0.067)
    assert "managed service" in result.summary()


def test_a_failed_run_keeps_the_previous_output_and_the_next_run_completes(spark, group, monkeypatch):
    config, tmp = group
    output = tmp / "out" / "everyone"
    run_batch(spark, config, "everyone")
    before = manifest(output)

    def die(*args, **kwargs):
        raise RuntimeError("killed between writing and committing")

    monkeypatch.setattr(batch_module.out, "commit_output", die)
    with pytest.raises(RuntimeError):
        run_batch(spark, config, "everyone")
    monkeypatch.undo()
    # The dead run wrote its whole folder, but the manifest still names the previous run's files.
    assert manifest(output) == before and len(output_lines(output)) == 80
    dead = {p.name for p in (output / "runs").iterdir()} - {before["run_id"], before["previous_run_id"]}
    assert len(dead) == 1
    after = run_batch(spark, config, "everyone").metrics["run_id"]
    # The next run removed the dead run's folder and keeps the one it replaced for readers still on it.
    assert {p.name for p in (output / "runs").iterdir()} == {before["run_id"], after}
    assert manifest(output)["previous_run_id"] == before["run_id"]
    assert len(output_lines(output)) == 80 and output_metrics(output)["run_id"] == after


def test_committing_switches_the_manifest_and_clears_the_old_layout(spark, tmp_path):
    from recsys_spark.inference import output as out

    folder = tmp_path / "old"
    folder.mkdir()
    # What earlier releases left at the top of the output folder.
    (folder / "part-00000-x.txt").write_text('{"old": 1}\n')
    (folder / "_metrics.json").write_text("{}")
    with pytest.raises(UserError, match="_manifest.json is missing"):
        out.output_files(spark, str(folder))
    out.write_run(spark, spark.createDataFrame([('{"a": 1}',), ('{"b": 2}',)], "value string"), str(folder), "r1")
    committed = out.commit_output(spark, str(folder), "r1", {"run_id": "r1", "users_in": 2})
    assert committed["lines"] == 2 and committed["previous_run_id"] is None
    assert output_lines(folder) == [{"a": 1}, {"b": 2}] and output_metrics(folder)["run_id"] == "r1"
    assert sorted(p.name for p in folder.iterdir()) == ["_SUCCESS", "_manifest.json", "runs"]
    assert out.read_output(spark, str(folder)).count() == 2


def test_all_users_cannot_feed_a_ranking_job(spark, group, tmp_path):
    config, tmp = group
    text = Path(config.source).read_text().replace(
        "input: {data}/ranking.jsonl".format(data=tmp / "data"), "input: all_users")
    other = tmp_path / "p.yaml"
    other.write_text(text)
    with pytest.raises(UserError, match="personalized-ranking needs an itemList"):
        run_batch(spark, load_config(other), "ranking")


def test_s3_input_and_output(spark, group, s3_client, tmp_path):
    config, tmp = group
    s3_client.create_bucket(Bucket="batch")
    s3_client.put_object(Bucket="batch", Key="in/users.jsonl", Body=b'{"userId": "a0"}\n{"userId": "b3"}\n')
    text = Path(config.source).read_text().replace(
        "input: {data}/ranking.jsonl, output: {out}/ranking".format(data=tmp / "data", out=tmp / "out"),
        "input: s3://batch/in/users.jsonl, output: s3://batch/out/s3-job").replace(
        "name: ranking, solution: rank", "name: ranking, solution: for-you")
    other = tmp_path / "p.yaml"
    other.write_text(text)
    result = run_batch(spark, load_config(other), "ranking")
    assert result.metrics["users_served"] == 2
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket="batch", Prefix="out/")["Contents"]]
    committed = json.loads(s3_client.get_object(Bucket="batch", Key="out/s3-job/_manifest.json")["Body"].read())
    run = f"out/s3-job/runs/{result.metrics['run_id']}/"
    # Everything is in the run's own folder but the manifest and _SUCCESS: nothing was staged elsewhere.
    assert {k for k in keys if not k.startswith(run)} == {"out/s3-job/_manifest.json", "out/s3-job/_SUCCESS"}
    assert f"{run}_metrics.json" in keys and committed["files"]
    body = b"".join(s3_client.get_object(Bucket="batch", Key=f"out/s3-job/{f}")["Body"].read()
                    for f in committed["files"])
    assert len(body.decode().splitlines()) == 2


def test_json_lines_escape_ids_and_keep_null_scores():
    out = pa.record_batch({
        "INPUT": ['{"userId": "a"}', '{"userId": "b"}', '"not json"'],
        "ITEMS": pa.array([['say "hi"', "back\\slash"], ["x"], []], pa.list_(pa.string())),
        "SCORES": pa.array([[0.5, 1e-7], None, None], pa.list_(pa.float32())),
        "ERROR": [None, None, "not valid JSON"], "NOTE": [None, "user not known", None]})
    lines = json_lines(out)
    parsed = [json.loads(v) for v in lines.column("value").to_pylist()]
    assert parsed[0] == {"input": {"userId": "a"}, "error": None,
                         "output": {"recommendedItems": ['say "hi"', "back\\slash"], "scores": [0.5, 1e-7]}}
    assert parsed[1]["output"] == {"recommendedItems": ["x"], "scores": None} and parsed[1]["note"] == "user not known"
    assert parsed[2] == {"input": "not json", "output": {"recommendedItems": [], "scores": None},
                         "error": "not valid JSON"}
    assert lines.column("FAILED").to_pylist() == [False, False, True]
