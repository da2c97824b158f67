"""What the image models and the AWS services the workflow uses cost: one dated table, ``prices.json``
beside this module (package data: the Lambda asset and every install carry it).

Each price names its unit as priced (a model's image: its quality and size), its source page and its
status: ``confirmed`` (seen on an AWS page on ``as_of``) or ``verify`` (seen only in third-party text:
check the AWS pricing page before relying on it). The manifest's cost (``core/cost.py``), ``GET
/models`` and ``benchmarks/cost.py`` all read this file, and nothing else holds a price.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

PRICES_FILE = Path(__file__).with_name("prices.json")
#: Where the table is, as the manifest names it (the file's path in the repository's Lambda package).
PRICES_SOURCE = "lambdas/image_pipeline/models/prices.json"

PriceStatus = Literal["confirmed", "verify"]


class _Priced(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServicePrice(_Priced):
    """One AWS service's price per unit (None: a note, not a price)."""

    price: float | None
    unit: str
    status: PriceStatus
    source: str
    note: str = ""


class ModelPrice(_Priced):
    """One model's price per image as priced (``unit`` says which quality and size)."""

    model_id: str
    price: float
    unit: str
    status: PriceStatus
    source: str
    note: str = ""


class PriceTable(_Priced):
    region: str
    currency: str
    as_of: date
    status_legend: dict[str, str]
    services: dict[str, ServicePrice]
    models_per_image: dict[str, ModelPrice]

    def service(self, name: str) -> float:
        """The price of service ``name`` (a KeyError names an entry the table lacks)."""
        price = self.services[name].price
        if price is None:
            raise KeyError(f"{name} has no price in {PRICES_SOURCE}")
        return price

    def model(self, registry_id: str, quality: str | None = None) -> tuple[str, ModelPrice] | None:
        """The price entry of a model (by registry id) at ``quality``: ``<id>-premium`` for premium
        when the table prices it apart, else the model's own entry; None when the table has none."""
        if quality == "premium" and f"{registry_id}-premium" in self.models_per_image:
            return f"{registry_id}-premium", self.models_per_image[f"{registry_id}-premium"]
        entry = self.models_per_image.get(registry_id)
        return (registry_id, entry) if entry is not None else None

    def reference(self) -> dict[str, str]:
        """Where a figure's prices come from: the table's date, file, Region and currency."""
        return {
            "as_of": self.as_of.isoformat(),
            "source": PRICES_SOURCE,
            "region": self.region,
            "currency": self.currency,
        }


@cache
def price_table(path: Path = PRICES_FILE) -> PriceTable:
    """The price table (read once)."""
    return PriceTable.model_validate(json.loads(path.read_text()))


def model_price_document(registry_id: str, quality: str | None = None) -> dict[str, object] | None:
    """A model's price as ``GET /models`` and the manifest show it; None when the table has none."""
    table = price_table()
    found = table.model(registry_id, quality)
    if found is None:
        return None
    entry_id, entry = found
    return {
        "usd_per_image": entry.price,
        "unit": entry.unit,
        "entry": entry_id,
        "status": entry.status,
        "source": entry.source,
        "as_of": table.as_of.isoformat(),
        **({"note": entry.note} if entry.note else {}),
    }
