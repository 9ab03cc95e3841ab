"""The real-time server driven by the AWS SDK's own clients (boto3 personalize-runtime and
personalize-events) on 127.0.0.1: answers, filters, metadata, typed errors, SigV4, events taking effect at
once and landing durably, hot reload under load, and the same answers as the batch job."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from conftest import free_port
from datasets_helpers import SCHEMAS
from recipe_helpers import as_csv, planted
from recsys_spark.config import load_config
from recsys_spark.datasets.importer import run_imports
from recsys_spark.inference.batch import run_batch
from recsys_spark.serving.server import Server
from recsys_spark.solutions.train import train_solution
from test_batch import items_csv, output_lines

PIPELINE = """
solutions:
  - {name: for-you, recipe: user-personalization, settings: {factors: 4, iterations: 8, regularization: 1.0,
     min_interactions: 500, min_users_with_two: 20}, events: {types: {view: 1.0, buy: 3.0}}}
  - {name: similar, recipe: sims, settings: {min_cointeraction_count: 1, min_interactions: 500, min_users_with_two: 20}}
  - {name: rank, recipe: personalized-ranking, settings: {factors: 4, iterations: 8, regularization: 1.0,
     min_interactions: 500, min_users_with_two: 20}}
filters:
  - {name: not-bought, expression: 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("buy")'}
  - name: cheap-not-bought
    expression: INCLUDE ItemID WHERE Items.PRICE < $MAX_PRICE | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("buy")
batch_jobs:
  - {name: plain, solution: for-you, input: all_users, output: OUT_/plain, num_results: 10}
  - {name: filtered, solution: for-you, input: DATA_/filtered.jsonl, output: OUT_/filtered, num_results: 10,
     filter: cheap-not-bought}
campaigns:
  - {name: for-you, solution: for-you, num_results: 10, filters: [not-bought, cheap-not-bought],
     metadata_columns: [GENRES, PRICE]}
  - {name: similar, solution: similar}
  - {name: rank, solution: rank}
serve: {publish_seconds: 0.2, reload_seconds: 3600}
"""
REGION = "us-east-1"
ARN = "arn:aws:personalize:us-east-1:123456789012:{}"


@pytest.fixture(scope="module")
def group(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    data, out = tmp / "data", tmp / "out"
    data.mkdir()
    users = sorted(planted()["USER_ID"].unique())
    (data / "filtered.jsonl").write_text("".join(json.dumps({"userId": u, "filterValues": {"MAX_PRICE": "30"}})
                                                 + "\n" for u in users))
    path = tmp / "pipeline.yaml"
    path.write_text(SCHEMAS.format(root=tmp / "warehouse")
                    + PIPELINE.replace("OUT_", str(out)).replace("DATA_", str(data)))
    config = load_config(path)
    run_imports(spark, config, "interactions", as_csv(planted(), tmp / "interactions.csv"))
    run_imports(spark, config, "items", items_csv(tmp / "items.csv"))
    for name in ("for-you", "similar", "rank"):
        train_solution(spark, config, name, evaluate=False)
    return config, tmp


class Running:
    """A Server answering on 127.0.0.1 in a thread, stopped by :meth:`stop`."""

    def __init__(self, config):
        import uvicorn

        self.server = Server(config)
        self.port = free_port()
        self.uvicorn = uvicorn.Server(uvicorn.Config(self.server.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, service: str, key: str = "testing", secret: str = "testing"):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=key,
                            aws_secret_access_key=secret, config=BotoConfig(retries={"max_attempts": 1}))

    def stop(self):
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def served(group):
    running = Running(group[0])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def runtime(served):
    return served.client("personalize-runtime")


def recommend(runtime, user, **extra):
    return runtime.get_recommendations(campaignArn=ARN.format("campaign/for-you"), userId=user, **extra)["itemList"]


def test_get_recommendations_through_the_sdk_client(runtime):
    items = recommend(runtime, "a0", numResults=5)
    assert len(items) == 5 and all(set(i) == {"itemId", "score"} for i in items)
    assert sum(i["itemId"].startswith("A") for i in items) >= 4  # group a's items for a user of group a
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    seen = set(planted().query("USER_ID == 'a0'")["ITEM_ID"])
    assert not seen & {i["itemId"] for i in items}
    related = runtime.get_recommendations(campaignArn=ARN.format("campaign/similar"), itemId="A3", numResults=4)
    assert [i["itemId"].startswith("A") for i in related["itemList"]].count(True) >= 3
    assert "A3" not in {i["itemId"] for i in related["itemList"]}
    ranked = runtime.get_personalized_ranking(campaignArn=ARN.format("campaign/rank"), userId="a0",
                                              inputList=["B1", "A13", "ghost", "A12"])["personalizedRanking"]
    assert [i["itemId"] for i in ranked][-1] == "ghost" and "score" not in ranked[-1]
    assert {i["itemId"] for i in ranked[:3]} == {"B1", "A13", "A12"}


def test_the_same_answers_as_the_batch_job(spark, group, runtime):
    config, tmp = group
    run_batch(spark, config, "plain")
    run_batch(spark, config, "filtered")
    for job, extra in (("plain", {}), ("filtered", {"filterArn": ARN.format("filter/cheap-not-bought"),
                                                    "filterValues": {"MAX_PRICE": "30"}})):
        lines = output_lines(tmp / "out" / job)
        assert len(lines) == 80
        for line in lines:
            answer = recommend(runtime, line["input"]["userId"], numResults=10, **extra)
            assert [i["itemId"] for i in answer] == line["output"]["recommendedItems"], (job, line["input"])
            # Equal to float32 rounding: BLAS sums a block of users in another order than one user.
            np.testing.assert_allclose([i["score"] for i in answer], line["output"]["scores"], rtol=1e-6, atol=1e-6)


def test_filters_with_values_and_metadata_columns(runtime):
    bought = set(planted().query("USER_ID == 'a0' and EVENT_TYPE == 'buy'")["ITEM_ID"])
    items = recommend(runtime, "a0", numResults=10, filterArn=ARN.format("filter/cheap-not-bought"),
                      filterValues={"MAX_PRICE": "30"}, metadataColumns={"ITEMS": ["PRICE", "GENRES"]})
    assert items and all(i["metadata"]["PRICE"] == "10.0" for i in items)  # A0-A9 / B0-B9 cost 10
    assert all(i["metadata"]["GENRES"] in ("a|x", "b|x") for i in items)
    assert not bought & {i["itemId"] for i in items}


@pytest.mark.parametrize("call,code", [
    (lambda r: r.get_recommendations(campaignArn=ARN.format("campaign/nope"), userId="a0"),
     "ResourceNotFoundException"),
    (lambda r: r.get_recommendations(campaignArn=ARN.format("campaign/for-you"), userId="a0", numResults=501),
     "InvalidInputException"),
    (lambda r: r.get_recommendations(campaignArn=ARN.format("campaign/for-you"), itemId="A1"),
     "InvalidInputException"),
    (lambda r: r.get_recommendations(campaignArn=ARN.format("campaign/for-you"), userId="a0",
                                     filterArn=ARN.format("filter/cheap-not-bought")), "InvalidInputException"),
    (lambda r: r.get_recommendations(campaignArn=ARN.format("campaign/similar"), itemId="A1",
                                     filterArn=ARN.format("filter/not-bought")), "InvalidInputException"),
    (lambda r: r.get_recommendations(campaignArn=ARN.format("campaign/for-you"), userId="a0",
                                     metadataColumns={"ITEMS": ["IN_STOCK"]}), "InvalidInputException"),
    (lambda r: r.get_personalized_ranking(campaignArn=ARN.format("campaign/for-you"), userId="a0",
                                          inputList=["A1"]), "InvalidInputException"),
])
def test_errors_are_the_sdks_typed_exceptions(runtime, call, code):
    with pytest.raises(ClientError) as caught:
        call(runtime)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["Error"]["Message"]
    assert isinstance(caught.value, getattr(runtime.exceptions, code))


def test_events_take_effect_at_once_and_land_durably(group, served, runtime):
    config, _ = group
    events = served.client("personalize-events")
    before = runtime.get_recommendations(campaignArn=ARN.format("campaign/for-you"), userId="newcomer",
                                         numResults=5)["itemList"]
    assert all("score" not in i for i in before)  # unknown: popular items without scores
    sent = [{"eventId": f"e{i}", "eventType": "view", "itemId": f"B{i}", "sentAt": 1_800_000_000 + i}
            for i in range(6)]
    events.put_events(trackingId="tracker", userId="newcomer", sessionId="s1", eventList=sent)
    after = recommend(runtime, "newcomer", numResults=5)
    assert all("score" in i for i in after)  # folded in from the new history: personal now
    assert sum(i["itemId"].startswith("B") for i in after) >= 4
    assert not {f"B{i}" for i in range(6)} & {i["itemId"] for i in after}  # seen items excluded at once
    # A buy takes effect on the very next request through the interaction filter.
    top = recommend(runtime, "a0", numResults=1, filterArn=ARN.format("filter/not-bought"))[0]["itemId"]
    events.put_events(trackingId="tracker", userId="a0", sessionId="s2",
                      eventList=[{"eventType": "buy", "itemId": top, "sentAt": 1_800_000_100}])
    assert top not in {i["itemId"] for i in recommend(runtime, "a0", numResults=10,
                                                      filterArn=ARN.format("filter/not-bought"))}
    # PutItems changes the metadata answers and the filters' item masks.
    events.put_items(datasetArn=ARN.format("dataset/items"),
                     items=[{"itemId": "A0", "properties": json.dumps({"price": 99.0, "genres": "a|x"})}])
    cheap = recommend(runtime, "b1", numResults=20, filterArn=ARN.format("filter/cheap-not-bought"),
                      filterValues={"MAX_PRICE": "30"})
    assert "A0" not in {i["itemId"] for i in cheap}
    with pytest.raises(events.exceptions.InvalidInputException):
        events.put_items(datasetArn=ARN.format("dataset/items"),
                         items=[{"itemId": "A1", "properties": json.dumps({"colour": "red"})}])
    # Every record is in the landing folder once published, in the shape `ingest` reads.
    deadline = time.monotonic() + 10
    landing = Path(config.landing)
    while True:  # each file is published publish_seconds after its first record
        lines, items = ([json.loads(x) for f in (landing / folder).glob("serve-*.jsonl")
                         for x in f.read_text().splitlines()] for folder in ("events", "items"))
        if (len(lines) >= 7 and items) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(x["itemId"] for x in lines if x.get("userId") == "newcomer") == [f"B{i}" for i in range(6)]
    assert {"userId": "a0", "sessionId": "s2", "eventType": "buy", "itemId": top, "sentAt": 1_800_000_100} in lines
    assert items == [{"itemId": "A0", "properties": json.dumps({"price": 99.0, "genres": "a|x"})}]


def test_health_and_metrics(served, runtime):
    import urllib.request

    recommend(runtime, "a1", numResults=3)
    with urllib.request.urlopen(f"{served.url}/ping", timeout=5) as r:
        health = json.load(r)
    assert health["status"] == "ok" and set(health["campaigns"]) == {"for-you", "similar", "rank"}
    with urllib.request.urlopen(f"{served.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'recsys_requests_total{operation="GetRecommendations",status="200"}' in text
    assert "recsys_request_seconds_bucket" in text and 'recsys_campaign_version{campaign="for-you"' in text


def test_signed_requests_checked_against_configured_keys(group, monkeypatch):
    monkeypatch.setenv("RECSYS_SPARK_SERVE_KEYS", "AKIDGOOD:right-secret")
    running = Running(group[0])
    try:
        good = running.client("personalize-runtime", "AKIDGOOD", "right-secret")
        assert recommend(good, "a0", numResults=2)
        for key, secret, code in (("AKIDGOOD", "wrong-secret", "InvalidSignatureException"),
                                  ("AKIDBAD", "right-secret", "UnrecognizedClientException")):
            with pytest.raises(ClientError) as caught:
                recommend(running.client("personalize-runtime", key, secret), "a0")
            assert caught.value.response["Error"]["Code"] == code
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        running.stop()


def test_a_new_version_is_hot_loaded_while_requests_run(spark, group, served, runtime):
    config, _ = group
    old = served.server.api.campaigns["for-you"].version.version
    new = train_solution(spark, config, "for-you", evaluate=False)
    failures, answered, stop = [], [], threading.Event()

    def ask():
        client = served.client("personalize-runtime")
        while not stop.is_set():
            try:
                answered.append(len(recommend(client, "b3", numResults=5)))
            except Exception as e:  # noqa: BLE001 - every failure is the test's finding
                failures.append(e)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert served.server.reload() == ["for-you"]
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not failures and len(answered) > 10 and set(answered) == {5}
    assert served.server.api.campaigns["for-you"].version.version == new.version != old


def test_landing_files_survive_a_killed_server(tmp_path):
    """Lines are fsynced before the future completes; a hidden file left by a killed server (a torn last line
    included) is published whole by the next start; concurrent appends share the file, none lost."""
    from concurrent.futures import wait

    from recsys_spark.serving.landing import LandingWriter

    writer = LandingWriter(str(tmp_path), publish_seconds=3600)
    futures = [writer.append("interactions", [json.dumps({"eventId": f"e{i}-{j}"}) for j in range(10)])
               for i in range(50)]
    wait(futures, timeout=30)
    assert all(f.result() == 10 for f in futures)
    [hidden] = (tmp_path / "events").glob(".serve-*.jsonl")
    assert len(hidden.read_text().splitlines()) == 500  # durable before publishing
    with open(hidden, "ab") as f:
        f.write(b'{"eventId": "torn')  # what a kill in the middle of a write leaves
    # "Kill" the writer: it forgets its open file (no publish, no close), and its thread stops.
    killed, writer._open = writer._open, {}
    writer.close()
    for _, handle, _ in killed.values():
        handle.close()
    restarted = LandingWriter(str(tmp_path), publish_seconds=3600)
    [published] = (tmp_path / "events").glob("serve-*.jsonl")
    assert not list((tmp_path / "events").glob(".serve-*"))
    ids = [json.loads(x)["eventId"] for x in published.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 500
    restarted.append("users", ['{"userId": "u1"}']).result(timeout=10)
    restarted.close()
    assert [f.read_text() for f in (tmp_path / "users").glob("serve-*.jsonl")] == ['{"userId": "u1"}\n']


def test_requests_scored_together_answer_as_each_alone(served, runtime):
    """The scorer answers the requests waiting together in one block: the same items and scores as one by
    one, whatever the mix of users, sizes, filters and failures in the block."""
    from recsys_spark.serving.state import Ask

    campaign = served.server.api.campaigns["for-you"]
    asks = [Ask("a0", num_results=5), Ask("b1", num_results=10, filter_name="not-bought"),
            Ask("nobody", num_results=5), Ask("a1", num_results=5, filter_name="cheap-not-bought",
                                              filter_values={"MAX_PRICE": "30"}),
            Ask("b2", num_results=5, filter_name="cheap-not-bought", filter_values={"MAX_PRICE": "50"}),
            Ask("b3", num_results=5, filter_name="cheap-not-bought"),  # no value bound: fails alone
            Ask("a0", num_results=5, filter_name="not-bought")]
    together = campaign.recommend_many(asks)
    for ask, answer in zip(asks, together):
        try:
            alone = campaign.recommend(ask.user_id, ask.item_id, ask.num_results, ask.filter_name, ask.filter_values)
        except Exception as e:  # noqa: BLE001 - compared below
            alone = e
        if isinstance(alone, Exception):
            assert type(answer) is type(alone) and str(answer) == str(alone)
        else:  # BLAS sums a block's products in another order than one row's: float32 rounding apart
            assert answer[0] == alone[0] and answer[2] == alone[2]
            assert (answer[1] is None) == (alone[1] is None)
            assert answer[1] is None or np.allclose(answer[1], alone[1], rtol=1e-5)
    assert isinstance(together[5], Exception) and not any(isinstance(a, Exception) for a in together[:5])
    # Through HTTP from many threads at once (blocks form in the server): the answers of one at a time.
    calls = [(f"{g}{i}", dict(numResults=3 + i % 4, **({"filterArn": ARN.format("filter/not-bought")}
                                                       if i % 2 else {})))
             for g in "ab" for i in range(8)]
    strip = lambda items: [(x["itemId"], x.get("score", 0.0)) for x in items]  # noqa: E731
    alone = [strip(recommend(runtime, user, **extra)) for user, extra in calls]
    clients = [served.client("personalize-runtime") for _ in range(8)]
    got = [None] * len(calls)

    def worker(w):
        for i in range(w, len(calls), len(clients)):
            got[i] = strip(recommend(clients[w], calls[i][0], **calls[i][1]))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine, theirs in zip(got, alone):
        assert [i for i, _ in mine] == [i for i, _ in theirs]
        assert np.allclose([x for _, x in mine], [x for _, x in theirs], rtol=1e-5)


def test_workers_share_events_and_are_replaced_on_sighup(group):
    """`serve --workers 2`: two processes on one port; an event one worker accepts holds on the next request
    whichever worker answers it; /metrics counts both; SIGHUP replaces both workers (each new one knows the
    events accepted before it started) with no failed request; SIGTERM publishes every landing file."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import urllib.request

    config, tmp = group
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "recsys_spark", "serve", "--config", str(config.source),
                                "--port", str(port), "--workers", "2"], stderr=subprocess.PIPE, text=True)

    def workers() -> set[str]:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            return set(re.findall(r'recsys_campaign_version\{[^}]*pid="(\d+)"[^}]*\} 1\.0', r.read().decode()))

    def wait_for(predicate, what: str, seconds: float = 120):
        deadline = time.monotonic() + seconds
        while True:
            try:
                if predicate():
                    return
            except OSError:
                pass
            assert process.poll() is None, f"the server stopped: {process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def client(service: str):  # a new client: a new connection, which either worker may accept
        return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                            aws_secret_access_key="testing", config=BotoConfig(retries={"max_attempts": 1}))

    def answers_from_another_worker(than: str, attempts: int = 200) -> list[dict]:
        for _ in range(attempts):
            got = client("personalize-runtime").get_recommendations(
                campaignArn=ARN.format("campaign/for-you"), userId="wanderer", numResults=5,
                filterArn=ARN.format("filter/not-bought"))
            if got["ResponseMetadata"]["HTTPHeaders"]["x-recsys-worker"] != than:
                return got["itemList"]
        raise AssertionError(f"every answer came from worker {than}")

    try:
        wait_for(lambda: len(workers()) == 2, "two workers")
        first = set(workers())
        sent = [{"eventType": "view", "itemId": f"B{i}", "sentAt": 1_800_000_000 + i} for i in range(6)]
        accepted = client("personalize-events").put_events(trackingId="t", userId="wanderer", sessionId="w",
                                                           eventList=sent)
        taker = accepted["ResponseMetadata"]["HTTPHeaders"]["x-recsys-worker"]
        assert taker in first
        elsewhere = answers_from_another_worker(taker)
        assert all("score" in i for i in elsewhere)  # personal: folded in from the other worker's events
        assert sum(i["itemId"].startswith("B") for i in elsewhere) >= 4
        assert not {f"B{i}" for i in range(6)} & {i["itemId"] for i in elsewhere}  # seen: excluded
        buy = client("personalize-events").put_events(
            trackingId="t", userId="wanderer", sessionId="w",
            eventList=[{"eventType": "buy", "itemId": elsewhere[0]["itemId"], "sentAt": 1_800_000_100}])
        again = answers_from_another_worker(buy["ResponseMetadata"]["HTTPHeaders"]["x-recsys-worker"])
        assert elsewhere[0]["itemId"] not in {i["itemId"] for i in again}  # the filter sees the other's buy
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            total = sum(float(v) for v in re.findall(
                r'recsys_requests_total\{operation="GetRecommendations",status="200"\} (\S+)', r.read().decode()))
        assert total >= 2  # both workers' counts, summed

        # SIGHUP: each worker replaced by a new process that serves before the old one stops; requests
        # keep being answered throughout, and the new workers know wanderer's events.
        failures, answered, stop = [], [], threading.Event()

        def load():
            runtime = client("personalize-runtime")
            while not stop.is_set():
                try:
                    answered.append(runtime.get_recommendations(campaignArn=ARN.format("campaign/for-you"),
                                                                userId="a0", numResults=3)["itemList"])
                except Exception as e:  # noqa: BLE001 - any failure is the finding
                    failures.append(e)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            process.send_signal(signal.SIGHUP)
            wait_for(lambda: len(workers()) == 2 and not workers() & first, "two new workers")
        finally:
            stop.set()
            loader.join(timeout=30)
        assert not failures and answered
        fresh = answers_from_another_worker("none")
        assert all("score" in i for i in fresh) and not {f"B{i}" for i in range(6)} & {i["itemId"] for i in fresh}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
    landing = Path(config.landing) / "events"
    assert not list(landing.glob(".serve-*"))  # every worker published its file on the way out
    wandered = [json.loads(x) for f in landing.glob("serve-*.jsonl") for x in f.read_text().splitlines()
                if '"wanderer"' in x]
    assert len(wandered) == 7
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith("recsys-serve-metrics-")]
