"""Load the demo geography (regions, grids, workers, groups); loading twice changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from grid.geography import ChatGroup, Grid, Region, Worker

DEMO_FILE = Path(__file__).parent / "data" / "demo_geography.yml"


def load_geography(session: Session, path: Path = DEMO_FILE) -> dict[str, int]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows: list[Region | Grid | Worker | ChatGroup] = []
    rows += [Region(code=r["code"], name=r["name"], level=r["level"], parent_code=r.get("parent")) for r in data["regions"]]
    rows += [Grid(code=g["code"], name=g["name"], community_code=g["community"]) for g in data["grids"]]
    rows += [Worker(id=w["id"], name=w["name"], grid_code=w["grid"], role=w.get("role", "worker")) for w in data["workers"]]
    rows += [ChatGroup(id=g["id"], name=g["name"], grid_code=g["grid"]) for g in data["groups"]]
    for row in rows:
        session.merge(row)
        session.flush()  # parents before children: regions reference each other
    return {
        "regions": len(data["regions"]),
        "grids": len(data["grids"]),
        "workers": len(data["workers"]),
        "groups": len(data["groups"]),
    }
