"""Configs and files for the dataset tests."""

from __future__ import annotations

from pathlib import Path

SCHEMAS = """
dataset_group:
  name: shop
  root: {root}
  schemas:
    interactions:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: ITEM_ID, type: string}}
        - {{name: TIMESTAMP, type: long}}
        - {{name: EVENT_TYPE, type: string}}
        - {{name: EVENT_VALUE, type: ["null", float]}}
    users:
      fields:
        - {{name: USER_ID, type: string}}
        - {{name: GENDER, type: ["null", string], categorical: true}}
        - {{name: AGE, type: ["null", int]}}
    items:
      fields:
        - {{name: ITEM_ID, type: string}}
        - {{name: GENRES, type: ["null", string], categorical: true}}
        - {{name: PRICE, type: ["null", double]}}
        - {{name: IN_STOCK, type: ["null", boolean]}}
        - {{name: CREATION_TIMESTAMP, type: ["null", long]}}
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)
