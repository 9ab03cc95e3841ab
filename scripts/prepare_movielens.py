#!/usr/bin/env python3
"""Turn the MovieLens-100k files into the managed service's CSV format for `configs/movielens.yaml`.

Input: a folder with RecBole-style tab-separated files (``ml-100k.inter``, ``ml-100k.item``,
``ml-100k.user``, headers ``name:type``), such as ``../shared/data/ml-100k``. MovieLens's license allows
research use but not redistribution, so the files are read from where they are and never copied into the
repository.

Output (``--out``, default ``data/movielens``):
  interactions.csv  USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE (``rating``), EVENT_VALUE (the rating, 1-5)
  items.csv         ITEM_ID, TITLE, GENRES (joined by ``|``), YEAR
  users.csv         USER_ID, AGE, GENDER, OCCUPATION
  batch-users.jsonl every user, one ``{"userId": ...}`` line each

  python scripts/prepare_movielens.py ../shared/data/ml-100k --out data/movielens
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

FILES = {"inter": "ml-100k.inter", "item": "ml-100k.item", "user": "ml-100k.user"}


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header cells ``name:type``; every value read as text."""
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (expected the MovieLens-100k files {', '.join(FILES.values())})")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="folder holding ml-100k.inter, ml-100k.item, ml-100k.user")
    p.add_argument("--out", type=Path, default=Path("data/movielens"), help="output folder")
    args = p.parse_args(argv)
    inter, item, user = (read_atomic(args.source / name) for name in FILES.values())
    args.out.mkdir(parents=True, exist_ok=True)

    pd.DataFrame({
        "USER_ID": inter["user_id"],
        "ITEM_ID": inter["item_id"],
        "TIMESTAMP": inter["timestamp"].astype(float).astype("int64"),
        "EVENT_TYPE": "rating",
        "EVENT_VALUE": inter["rating"].astype(float),
    }).to_csv(args.out / "interactions.csv", index=False)
    pd.DataFrame({
        "ITEM_ID": item["item_id"],
        "TITLE": item["movie_title"],
        # Genres are space-separated single words in this layout ("Children's", "Sci-Fi", "Film-Noir").
        "GENRES": item["class"].str.split().str.join("|"),
        "YEAR": pd.to_numeric(item["release_year"], errors="coerce").astype("Int64"),
    }).to_csv(args.out / "items.csv", index=False)
    pd.DataFrame({
        "USER_ID": user["user_id"],
        "AGE": user["age"].astype(int),
        "GENDER": user["gender"],
        "OCCUPATION": user["occupation"],
    }).to_csv(args.out / "users.csv", index=False)
    with (args.out / "batch-users.jsonl").open("w") as f:
        for uid in user["user_id"]:
            f.write(json.dumps({"userId": uid}) + "\n")
    print(f"wrote {len(inter):,} interactions, {len(item):,} items, {len(user):,} users to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
