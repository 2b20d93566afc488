"""Load the demo geography (regions, grids, workers, street contacts, groups, departments); loading twice changes
nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from grid.geography import ChatGroup, Department, Grid, Region, StreetContact, Worker

DEMO_FILE = Path(__file__).parent / "data" / "demo_geography.yml"


def load_geography(session: Session, path: Path = DEMO_FILE) -> dict[str, int]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows: list[Region | Grid | Worker | StreetContact | ChatGroup | Department] = []
    rows += [Region(code=r["code"], name=r["name"], level=r["level"], parent_code=r.get("parent")) for r in data["regions"]]
    rows += [Grid(code=g["code"], name=g["name"], community_code=g["community"]) for g in data["grids"]]
    rows += [
        Worker(id=w["id"], name=w["name"], grid_code=w["grid"], role=w.get("role", "worker"), on_duty=w.get("on_duty", True))
        for w in data["workers"]
    ]
    rows += [StreetContact(id=p["id"], name=p["name"], street_code=p["street"]) for p in data.get("streets", [])]
    rows += [Department(code=d["code"], name=d["name"]) for d in data.get("departments", [])]
    # Tags only when the file names some: reloading the demo must not wipe tags set with `gridbot group tags`.
    rows += [
        ChatGroup(id=g["id"], name=g["name"], grid_code=g["grid"], **({"tags": g["tags"]} if "tags" in g else {}))
        for g in data["groups"]
    ]
    for row in rows:
        session.merge(row)
        session.flush()  # parents before children: regions reference each other
    return {name: len(data.get(name, [])) for name in ("regions", "grids", "workers", "streets", "groups", "departments")}
