"""The data scripts: the synthetic generator and the MovieLens converter write the service's CSV format,
matching the example configs' schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys_spark.config import load_config
from recsys_spark.datasets.warehouse import struct_type

REPO = Path(__file__).resolve().parent.parent


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    script("generate_synthetic.py", "--out", str(out), "--users", "600", "--items", "300", "--chunk-users", "250")
    return out


def test_synthetic_is_seeded_and_independent_of_output_folder(synthetic, tmp_path):
    script("generate_synthetic.py", "--out", str(tmp_path), "--users", "600", "--items", "300",
           "--chunk-users", "250")
    for name in ("users.csv", "items.csv", "interactions.csv", "batch-users.jsonl", "related-items.jsonl",
                 "landing/users/users-0001.jsonl", "landing/events/events-0001.jsonl"):
        assert (tmp_path / name).read_bytes() == (synthetic / name).read_bytes(), name
    script("generate_synthetic.py", "--out", str(tmp_path / "other"), "--users", "600", "--items", "300",
           "--chunk-users", "250", "--seed", "7")
    assert (tmp_path / "other" / "interactions.csv").read_bytes() != (synthetic / "interactions.csv").read_bytes()


def test_synthetic_matches_the_example_config_and_is_realistic(synthetic):
    config = load_config(REPO / "configs" / "synthetic-ecommerce.yaml")
    frames = {d: pd.read_csv(synthetic / f"{d}.csv", dtype={"USER_ID": str, "ITEM_ID": str})
              for d in ("users", "items", "interactions")}
    for dataset, frame in frames.items():
        assert list(frame.columns) == config.schema(dataset).names, dataset
    users, items, events = frames["users"], frames["items"], frames["interactions"]
    assert len(users) == 600 and users.USER_ID.is_unique
    assert len(items) == 300 and items.ITEM_ID.is_unique
    assert set(events.EVENT_TYPE) == {"view", "cart", "purchase"}
    assert set(events.USER_ID) <= set(users.USER_ID) and set(events.ITEM_ID) <= set(items.ITEM_ID)
    counts = events.EVENT_TYPE.value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0  # a funnel
    assert events.loc[events.EVENT_TYPE == "purchase", "EVENT_VALUE"].gt(0).all()
    assert events.loc[events.EVENT_TYPE != "purchase", "EVENT_VALUE"].isna().all()
    joined = events.merge(items, on="ITEM_ID")
    assert (joined.TIMESTAMP >= joined.CREATION_TIMESTAMP).all()  # never before the item existed
    per_item = events.groupby("ITEM_ID").USER_ID.nunique().sort_values(ascending=False)
    assert per_item.iloc[:15].sum() > per_item.iloc[-150:].sum()  # a long tail: top 5% beat the bottom half
    per_user = events.groupby("USER_ID").size()
    assert per_user.max() > 5 * per_user.median()  # a few heavy users
    assert items.CATEGORIES.str.contains("|", regex=False).all()
    batch = [json.loads(line) for line in (synthetic / "batch-users.jsonl").read_text().splitlines()]
    assert all("userId" in line for line in batch) and any("filterValues" in line for line in batch)


def test_synthetic_csv_reads_with_the_schema_in_spark(spark, synthetic):
    config = load_config(REPO / "configs" / "synthetic-ecommerce.yaml")
    for dataset in ("users", "items", "interactions"):
        path = str(synthetic / f"{dataset}.csv")
        frame = spark.read.csv(path, header=True, schema=struct_type(config.schema(dataset)), mode="FAILFAST")
        assert frame.count() == len(pd.read_csv(path)), dataset


def test_prepare_movielens_converts_the_recbole_files(tmp_path):
    src = tmp_path / "ml"
    src.mkdir()
    (src / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                       "196\t242\t3\t881250949\n186\t302\t5\t891717742\n")
    (src / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                      "242\tKolya\t1996\tComedy\n302\tL.A. Confidential, The\t1997\tCrime Film-Noir Mystery\n"
                                      "267\tunknown\t\tunknown\n")
    (src / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                                      "196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n")
    out = tmp_path / "out"
    assert "wrote 2 interactions, 3 items, 2 users" in script("prepare_movielens.py", str(src), "--out", str(out)).stdout
    config = load_config(REPO / "configs" / "movielens.yaml")
    frames = {d: pd.read_csv(out / f"{d}.csv", dtype=str, keep_default_na=False)
              for d in ("users", "items", "interactions")}
    for dataset, frame in frames.items():
        assert list(frame.columns) == config.schema(dataset).names, dataset
    assert frames["interactions"].values.tolist() == [["196", "242", "881250949", "rating", "3.0"],
                                                      ["186", "302", "891717742", "rating", "5.0"]]
    assert frames["items"].values.tolist() == [["242", "Kolya", "Comedy", "1996"],
                                               ["302", "L.A. Confidential, The", "Crime|Film-Noir|Mystery", "1997"],
                                               ["267", "unknown", "unknown", ""]]
    assert frames["users"].values.tolist() == [["196", "49", "M", "writer"], ["186", "39", "F", "executive"]]
    assert (out / "batch-users.jsonl").read_text() == '{"userId": "196"}\n{"userId": "186"}\n'


def test_prepare_movielens_names_a_missing_file(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_movielens.py"), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "ml-100k.inter not found" in result.stderr
