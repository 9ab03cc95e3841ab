#!/usr/bin/env python3
"""Generate a seeded, realistic e-commerce dataset group in the managed service's CSV format.

Writes into ``--out``:
  users.csv         USER_ID, AGE_GROUP, GENDER, MEMBERSHIP (categorical; some values empty)
  items.csv         ITEM_ID, CATEGORY_L1, CATEGORIES (``l1|l1/sub``), BRAND, PRICE, CREATION_TIMESTAMP
  interactions.csv  USER_ID, ITEM_ID, TIMESTAMP (epoch seconds), EVENT_TYPE (view/cart/purchase), EVENT_VALUE
                    (the order value for purchases, empty otherwise)
  batch-users.jsonl, related-items.jsonl   batch inference inputs in the service's JSON-lines format
  landing/          what arrives after the import, as the service's PutUsers / PutEvents JSON lines for
                    ``ingest``: users/ (a few new users) and events/ (the day after ``--end``: events of
                    about 2% of the users and of the new ones, with event IDs)

What makes it realistic: power-law item popularity; lognormal per-user activity (many light users, a few
heavy ones); each user prefers one to three categories; a view -> cart -> purchase funnel with increasing
delays; items created during the window are only interacted with after their creation; timestamps over
``--days`` days. The same ``--seed`` and sizes always give the same files. Users are generated in chunks
of ``--chunk-users`` and appended, so memory stays flat at millions of users.

  python scripts/generate_synthetic.py --out data/synthetic                      # 5,000 users, ~150k events
  python scripts/generate_synthetic.py --out /data/big --users 1000000 --items 20000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = {
    "electronics": ["phones", "laptops", "audio", "cameras", "accessories"],
    "books": ["fiction", "science", "history", "children", "cooking"],
    "home": ["kitchen", "furniture", "decor", "bedding"],
    "fashion": ["women", "men", "shoes", "bags", "watches"],
    "beauty": ["skincare", "makeup", "fragrance"],
    "sports": ["running", "cycling", "fitness", "outdoor"],
    "toys": ["games", "puzzles", "dolls", "building"],
    "grocery": ["snacks", "drinks", "coffee", "organic"],
    "garden": ["plants", "tools", "furniture"],
    "pets": ["dogs", "cats", "aquarium"],
}
# Typical price level per category (USD, median of a lognormal).
PRICE_LEVEL = {"electronics": 120, "books": 15, "home": 45, "fashion": 40, "beauty": 20, "sports": 35,
               "toys": 25, "grocery": 8, "garden": 30, "pets": 18}
AGE_GROUPS = (["18-24", "25-34", "35-44", "45-54", "55-64", "65+"], [0.14, 0.28, 0.23, 0.16, 0.11, 0.08])
GENDERS = (["F", "M", ""], [0.48, 0.45, 0.07])
MEMBERSHIPS = (["basic", "plus", "premium"], [0.70, 0.22, 0.08])
DAY = 86_400


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder to write the CSV and JSON-lines files to")
    p.add_argument("--users", type=int, default=5_000, help="number of users (default 5,000)")
    p.add_argument("--items", type=int, default=2_000, help="number of items (default 2,000)")
    p.add_argument("--mean-views", type=float, default=25.0, help="mean item views per user (default 25)")
    p.add_argument("--days", type=int, default=180, help="length of the interaction history (default 180)")
    p.add_argument("--end", type=int, default=1_790_000_000,
                   help="epoch seconds of the last possible interaction in interactions.csv (default 1790000000, "
                        "Sept 2026; the landing events follow it)")
    p.add_argument("--popularity-exponent", type=float, default=1.0, help="Zipf exponent of item popularity")
    p.add_argument("--chunk-users", type=int, default=50_000, help="users generated per chunk (memory bound)")
    p.add_argument("--batch-users", type=int, default=1_000, help="lines in batch-users.jsonl")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    for name in ("users", "items", "chunk_users", "days"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class Catalog:
    """Items with their category, popularity and creation time, plus samplers over them."""

    def __init__(self, n_items: int, start: int, end: int, exponent: float, rng: np.random.Generator):
        l1_names = list(CATEGORIES)
        # Some categories are far bigger than others.
        l1_share = rng.dirichlet(np.full(len(l1_names), 2.0))
        self.l1 = rng.choice(len(l1_names), size=n_items, p=l1_share)
        subs = np.array([rng.integers(len(CATEGORIES[l1_names[c]])) for c in self.l1])
        rank = rng.permutation(n_items) + 1
        weight = 1.0 / rank ** exponent
        self.popularity = weight / weight.sum()
        level = np.array([PRICE_LEVEL[l1_names[c]] for c in self.l1], dtype=float)
        self.price = np.round(level * rng.lognormal(0.0, 0.6, n_items), 2).clip(0.99)
        # 70% of the catalog exists before the window; the rest launches during it.
        launched = rng.random(n_items) < 0.3
        self.created = np.where(launched, rng.integers(start, end - DAY, n_items),
                                start - rng.integers(DAY, 3 * 365 * DAY, n_items))
        self.ids = np.array([f"i{i}" for i in range(n_items)])
        self.frame = pd.DataFrame({
            "ITEM_ID": self.ids,
            "CATEGORY_L1": [l1_names[c] for c in self.l1],
            "CATEGORIES": [f"{l1_names[c]}|{l1_names[c]}/{CATEGORIES[l1_names[c]][s]}"
                           + ("|sale" if rng.random() < 0.08 else "") for c, s in zip(self.l1, subs)],
            "BRAND": [f"{l1_names[c][:4]}-brand-{int(b)}" for c, b in
                      zip(self.l1, rng.zipf(1.6, n_items).clip(max=40))],
            "PRICE": self.price,
            "CREATION_TIMESTAMP": self.created,
        })
        self.l1_share = np.bincount(self.l1, weights=self.popularity, minlength=len(l1_names))
        # Popularity-weighted sampling within a category in one vectorized searchsorted: items sorted by
        # category, each category's cumulative weights normalised to [c, c + 1).
        self.by_category = np.argsort(self.l1, kind="stable")
        cats = self.l1[self.by_category]
        w = self.popularity[self.by_category]
        cum = np.zeros_like(w)
        for c in range(len(l1_names)):
            members = cats == c
            if members.any():
                cum[members] = c + np.cumsum(w[members]) / w[members].sum()
        self.category_cum = cum
        self.global_cum = np.cumsum(self.popularity)

    def sample_global(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.global_cum, rng.random(n) * self.global_cum[-1]), len(self.ids) - 1)

    def sample_in_categories(self, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.category_cum, categories + rng.random(len(categories)) * 0.999999)
        return self.by_category[np.minimum(pos, len(self.ids) - 1)]


def users_chunk(first: int, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({
        "USER_ID": [f"u{i}" for i in range(first, first + n)],
        "AGE_GROUP": rng.choice(AGE_GROUPS[0], size=n, p=AGE_GROUPS[1]),
        "GENDER": rng.choice(GENDERS[0], size=n, p=GENDERS[1]),
        "MEMBERSHIP": rng.choice(MEMBERSHIPS[0], size=n, p=MEMBERSHIPS[1]),
    })


def interactions_chunk(first: int, n: int, catalog: Catalog, args, start: int,
                       rng: np.random.Generator) -> pd.DataFrame:
    # Per-user activity: lognormal views, so most users are light and a few are heavy.
    sigma = 1.0
    views = np.maximum(1, rng.lognormal(np.log(args.mean_views) - sigma ** 2 / 2, sigma, n).astype(np.int64))
    user = np.repeat(np.arange(first, first + n), views)
    # One to three favourite categories per user, drawn by category popularity.
    favourites = np.stack([rng.choice(len(CATEGORIES), size=n, p=catalog.l1_share) for _ in range(3)], axis=1)
    n_fav = rng.integers(1, 4, n)
    local = user - first
    pick = (rng.random(len(user)) * n_fav[local]).astype(np.int64)
    loyal = rng.random(len(user)) < 0.75
    item = np.where(loyal, catalog.sample_in_categories(favourites[local, pick], rng),
                    catalog.sample_global(len(user), rng))
    # Each user is active from a first visit to the end of the window; a view never precedes its item.
    end = args.end
    first_seen = rng.integers(start, end - DAY, n)
    ts = first_seen[local] + (rng.random(len(user)) * (end - first_seen[local])).astype(np.int64)
    created = catalog.created[item]
    ts = np.where(ts < created, created + (rng.random(len(user)) * (end - created)).astype(np.int64), ts)
    # The funnel: some views become carts (more often in favourite categories), some carts purchases.
    cart = rng.random(len(user)) < np.where(loyal, 0.14, 0.07)
    cart_ts = np.minimum(ts + rng.integers(10, 2 * 3600, len(user)), end)
    buy = cart & (rng.random(len(user)) < 0.45)
    buy_ts = np.minimum(cart_ts + rng.integers(60, DAY, len(user)), end)
    quantity = rng.integers(1, 4, len(user))
    frames = [
        (user, item, ts, "view", np.full(len(user), np.nan)),
        (user[cart], item[cart], cart_ts[cart], "cart", np.full(int(cart.sum()), np.nan)),
        (user[buy], item[buy], buy_ts[buy], "purchase", np.round(catalog.price[item[buy]] * quantity[buy], 2)),
    ]
    return pd.DataFrame({
        "USER_ID": np.concatenate([np.char.add("u", u.astype(str)) for u, *_ in frames]),
        "ITEM_ID": np.concatenate([catalog.ids[i] for _, i, *_ in frames]),
        "TIMESTAMP": np.concatenate([t for _, _, t, *_ in frames]),
        "EVENT_TYPE": np.concatenate([np.full(len(u), kind) for u, _, _, kind, _ in frames]),
        "EVENT_VALUE": np.concatenate([v for *_, v in frames]),
    })


def write_batch_inputs(out: Path, args, catalog: Catalog, rng: np.random.Generator) -> None:
    users = rng.choice(args.users, size=min(args.batch_users, args.users), replace=False)
    with (out / "batch-users.jsonl").open("w") as f:
        for k, u in enumerate(sorted(users)):
            line = {"userId": f"u{u}"}
            if k % 10 == 0:  # some lines carry a filter parameter, as callers of the price filter would
                line["filterValues"] = {"MAX_PRICE": str(int(rng.choice([20, 50, 100])))}
            f.write(json.dumps(line) + "\n")
        f.write(json.dumps({"userId": "new-user-not-in-data"}) + "\n")
    popular = np.argsort(-catalog.popularity)[:200]
    with (out / "related-items.jsonl").open("w") as f:
        for i in popular:
            f.write(json.dumps({"itemId": catalog.ids[i]}) + "\n")


def write_landing(out: Path, args, catalog: Catalog, rng: np.random.Generator) -> int:
    """The landing folder's files (see the module docstring); returns the number of events written."""
    new_users = [f"new-u{i}" for i in range(max(1, args.users // 1000))]
    returning = rng.choice(args.users, size=max(1, args.users // 50), replace=False)
    who = [f"u{u}" for u in sorted(returning)] + new_users
    (out / "landing" / "users").mkdir(parents=True, exist_ok=True)
    (out / "landing" / "events").mkdir(parents=True, exist_ok=True)
    with (out / "landing" / "users" / "users-0001.jsonl").open("w") as f:
        for user in new_users:
            profile = {"ageGroup": str(rng.choice(AGE_GROUPS[0], p=AGE_GROUPS[1])),
                       "membership": str(rng.choice(MEMBERSHIPS[0], p=MEMBERSHIPS[1]))}
            f.write(json.dumps({"userId": user, "properties": json.dumps(profile)}) + "\n")
    n = 0
    with (out / "landing" / "events" / "events-0001.jsonl").open("w") as f:
        for user in who:
            session = f"s-{user}-{args.end}"
            for item in catalog.sample_global(int(rng.integers(1, 6)), rng):
                sent = args.end + int(rng.integers(60, DAY))
                bought = rng.random() < 0.1
                event = {"eventId": f"e-{args.seed}-{n}", "userId": user, "sessionId": session, "sentAt": sent,
                         "itemId": str(catalog.ids[item]), "eventType": "purchase" if bought else "view"}
                if bought:
                    event["eventValue"] = float(catalog.price[item])
                f.write(json.dumps(event) + "\n")
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    start = args.end - args.days * DAY
    root = np.random.SeedSequence(args.seed)
    catalog_seq, batch_seq, users_seq, landing_seq = root.spawn(4)  # the first three as with spawn(3)
    catalog = Catalog(args.items, start, args.end, args.popularity_exponent, np.random.default_rng(catalog_seq))
    catalog.frame.to_csv(args.out / "items.csv", index=False)
    n_events = 0
    chunks = range(0, args.users, args.chunk_users)
    for k, (first, seq) in enumerate(zip(chunks, users_seq.spawn(len(chunks)))):
        rng = np.random.default_rng(seq)
        n = min(args.chunk_users, args.users - first)
        mode, header = ("w", True) if k == 0 else ("a", False)
        users_chunk(first, n, rng).to_csv(args.out / "users.csv", index=False, mode=mode, header=header)
        events = interactions_chunk(first, n, catalog, args, start, rng)
        events.to_csv(args.out / "interactions.csv", index=False, mode=mode, header=header, float_format="%.2f")
        n_events += len(events)
        if len(chunks) > 1:
            print(f"  users {first + n:,}/{args.users:,}, interactions {n_events:,}", file=sys.stderr, flush=True)
    write_batch_inputs(args.out, args, catalog, np.random.default_rng(batch_seq))
    fresh = write_landing(args.out, args, catalog, np.random.default_rng(landing_seq))
    print(f"wrote {args.users:,} users, {args.items:,} items, {n_events:,} interactions (+ {fresh:,} events "
          f"in landing/) to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
