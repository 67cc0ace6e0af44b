"""The file channel's parser: CSV rows in the formats of DESIGN §5/§6 → typed rows or quarantine reasons.

Pure functions, no database. `parse_csv(kind, text)` never raises on a bad row: each row is either
accepted (typed values) or rejected with a reason code and detail (DESIGN §9, I-6). A file whose header
lacks required columns is a `FileFormatError` (nothing is loaded). Per-source layouts (POS exports of
systems without a stock API) are data: a `SourceLayout` renames columns and maps values onto the
canonical format before the same validation runs.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from orchestration.lib.raw import FILE_TABLES

MOVEMENT_TYPES = (
    "receipt", "sale", "customer_return", "vendor_return", "transfer_out", "transfer_in",
    "adjustment", "damage", "physical_count",
)
INBOUND = {"receipt", "customer_return", "transfer_in"}
OUTBOUND = {"sale", "vendor_return", "transfer_out", "damage"}
LOCATION_KINDS = ("warehouse", "store", "marketplace", "online", "fba")
CONFLICT_RULES = ("master_wins", "last_write_wins", "manual")
MAX_ABS = Decimal("1e12")
MAX_TEXT = 512
REQUIRED = {
    "movements": ["event_id", "occurred_at", "sku", "location", "movement_type", "quantity", "uom"],
    "skus": ["sku", "base_uom"],
    "uom_conversions": ["sku", "uom", "factor_to_base"],
    "locations": ["location", "kind", "master_channel"],
    "listings": ["channel", "channel_sku", "channel_location", "sku", "location"],
    "policies": ["channel"],
    "kit_components": ["kit_sku", "component_sku", "quantity_per_kit"],
}
KINDS = tuple(REQUIRED)


class FileFormatError(ValueError):
    """The file as a whole can't be read (missing columns, not CSV); nothing is loaded."""


class RowError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SourceLayout:
    """How one source's export maps onto the canonical movement format (channels are data)."""

    name: str
    columns: Mapping[str, str]  # canonical column -> the source's column name
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # canonical column -> {source value: canonical}
    defaults: Mapping[str, str] = field(default_factory=dict)
    negate_outbound: bool = False  # sources that report outbound quantities as positive numbers
    timestamp_format: str | None = None  # strptime format when the source does not write ISO 8601
    timezone: str | None = None  # documented zone for sources that write local times without an offset

    def canonical(self, row: Mapping[str, str]) -> dict[str, str]:
        out = dict(self.defaults)
        for canon, src in self.columns.items():
            if src in row:
                value = (row[src] or "").strip()
                out[canon] = self.values.get(canon, {}).get(value, self.values.get(canon, {}).get(value.lower(), value))
        if self.timestamp_format and out.get("occurred_at"):
            try:
                parsed = datetime.strptime(out["occurred_at"], self.timestamp_format)
            except ValueError as exc:
                raise RowError("bad_timestamp", f"occurred_at {out['occurred_at']!r} does not match {self.timestamp_format}") from exc
            if parsed.tzinfo is None and self.timezone:
                from zoneinfo import ZoneInfo

                parsed = parsed.replace(tzinfo=ZoneInfo(self.timezone))
            out["occurred_at"] = parsed.isoformat()
        if self.negate_outbound and out.get("movement_type") in OUTBOUND and out.get("quantity", "").lstrip().replace(".", "", 1).isdigit():
            out["quantity"] = "-" + out["quantity"].strip()
        return out

    def required_source_columns(self) -> list[str]:
        return [self.columns[c] for c in REQUIRED["movements"] if c in self.columns and c not in self.defaults]


@dataclass
class ParseResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {line, reason, detail, row}


def _text(row: Mapping[str, str], col: str, required: bool = True) -> str | None:
    raw = row.get(col)
    value = None if raw is None else raw.strip()
    if not value:
        if required:
            raise RowError("missing_value", f"{col} is empty")
        return None
    if "\x00" in value:
        raise RowError("invalid_character", f"{col} contains a NUL byte")
    if len(value) > MAX_TEXT:
        raise RowError("value_too_long", f"{col} is longer than {MAX_TEXT} characters")
    return value


def normalize_identifier(value: str) -> str:
    """SKU/location identifiers: NFKC (full-width lookalikes) and surrounding whitespace removed."""
    return unicodedata.normalize("NFKC", value).strip()


def _decimal(row: Mapping[str, str], col: str, required: bool = True) -> Decimal | None:
    value = _text(row, col, required)
    if value is None:
        return None
    try:
        number = Decimal(value.replace("_", "x"))  # Decimal accepts "1_000"; a CSV number never should
    except InvalidOperation:
        raise RowError("not_a_number", f"{col} {value[:40]!r} is not a decimal number") from None
    if not number.is_finite():
        raise RowError("non_finite_number", f"{col} is {value!r}; NaN and infinity are not quantities")
    if abs(number) >= MAX_ABS:
        raise RowError("out_of_range", f"{col} {value[:40]} is out of range (|x| < 1e12)")
    return number


def _timestamp(row: Mapping[str, str], col: str) -> datetime:
    value = _text(row, col)
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise RowError("bad_timestamp", f"{col} {value!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise RowError("missing_timezone", f"{col} {value!r} has no time zone; write e.g. 2026-01-31T09:00:00+00:00")
    if ts > datetime.now(UTC) + timedelta(days=1):
        raise RowError("future_timestamp", f"{col} {value!r} is more than a day in the future")
    return ts


def _movement(row: Mapping[str, str], source: str) -> dict[str, Any]:
    movement_type = (_text(row, "movement_type") or "").lower()
    if movement_type not in MOVEMENT_TYPES:
        raise RowError("unknown_movement_type", f"movement_type {movement_type!r} is not one of {', '.join(MOVEMENT_TYPES)}")
    quantity = _decimal(row, "quantity")
    unit_cost = _decimal(row, "unit_cost", required=False)
    if movement_type == "receipt" and unit_cost is None:
        raise RowError("missing_cost", "unit_cost is required on receipts")
    if unit_cost is not None and unit_cost < 0:
        raise RowError("negative_cost", f"unit_cost {unit_cost} is negative")
    if movement_type in INBOUND and quantity < 0:
        raise RowError("negative_inbound_quantity", f"{movement_type} quantity {quantity} must be positive")
    if movement_type in OUTBOUND and quantity > 0:
        raise RowError("positive_outbound_quantity", f"{movement_type} quantity {quantity} must be negative (outbound)")
    if movement_type == "physical_count" and quantity < 0:
        raise RowError("negative_count", f"physical_count level {quantity} is negative")
    currency = _text(row, "currency", required=False)
    if currency is not None and not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise RowError("bad_currency", f"currency {currency!r} is not a 3-letter ISO code")
    return {
        "source": source,
        "event_id": _text(row, "event_id"),
        "occurred_at": _timestamp(row, "occurred_at"),
        "sku": normalize_identifier(_text(row, "sku")),
        "location": normalize_identifier(_text(row, "location")),
        "movement_type": movement_type,
        "quantity": quantity,
        "uom": _text(row, "uom").upper(),
        "unit_cost": unit_cost,
        "currency": currency.upper() if currency else None,
        "reference": _text(row, "reference", required=False),
    }


def _reference(kind: str, row: Mapping[str, str]) -> dict[str, Any]:
    if kind == "skus":
        return {"sku": normalize_identifier(_text(row, "sku")), "base_uom": _text(row, "base_uom").upper(),
                "description": _text(row, "description", required=False)}
    if kind == "uom_conversions":
        factor = _decimal(row, "factor_to_base")
        if factor <= 0:
            raise RowError("bad_factor", f"factor_to_base {factor} must be positive")
        sku = _text(row, "sku", required=False)
        # The key can't be null; an empty sku means "all SKUs" and is stored as ''.
        return {"sku": normalize_identifier(sku) if sku else "", "uom": _text(row, "uom").upper(), "factor_to_base": factor}
    if kind == "locations":
        kind_value = _text(row, "kind").lower()
        if kind_value not in LOCATION_KINDS:
            raise RowError("unknown_location_kind", f"kind {kind_value!r} is not one of {', '.join(LOCATION_KINDS)}")
        return {"location": normalize_identifier(_text(row, "location")), "kind": kind_value,
                "master_channel": _text(row, "master_channel").lower()}
    if kind == "listings":
        return {"channel": _text(row, "channel").lower(), "channel_sku": _text(row, "channel_sku"),
                "channel_location": _text(row, "channel_location"), "sku": normalize_identifier(_text(row, "sku")),
                "location": normalize_identifier(_text(row, "location"))}
    if kind == "policies":
        rule = (_text(row, "conflict_rule", required=False) or "master_wins").lower()
        if rule not in CONFLICT_RULES:
            raise RowError("unknown_conflict_rule", f"conflict_rule {rule!r} is not one of {', '.join(CONFLICT_RULES)}")
        percentage = _decimal(row, "percentage", required=False)
        if percentage is not None and not (0 <= percentage <= 100):
            raise RowError("out_of_range", f"percentage {percentage} must be between 0 and 100")
        values = {c: _decimal(row, c, required=False) for c in ("safety_buffer", "maximum", "minimum", "in_flight_seconds")}
        if any(v is not None and v < 0 for v in values.values()):
            raise RowError("out_of_range", "safety_buffer, maximum, minimum and in_flight_seconds must not be negative")
        return {"channel": _text(row, "channel").lower(), "safety_buffer": values["safety_buffer"] or Decimal(0),
                "percentage": Decimal(100) if percentage is None else percentage, "maximum": values["maximum"],
                "minimum": values["minimum"], "conflict_rule": rule, "in_flight_seconds": values["in_flight_seconds"]}
    if kind == "kit_components":
        qty = _decimal(row, "quantity_per_kit")
        if qty <= 0:
            raise RowError("bad_quantity", f"quantity_per_kit {qty} must be positive")
        return {"kit_sku": normalize_identifier(_text(row, "kit_sku")),
                "component_sku": normalize_identifier(_text(row, "component_sku")), "quantity_per_kit": qty}
    raise FileFormatError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def parse_csv(kind: str, text: str, source: str = "file", layout: SourceLayout | None = None) -> ParseResult:
    """Parse a whole CSV file of one KIND; rows are accepted or rejected with a reason, never raised."""
    if kind not in KINDS:
        raise FileFormatError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise FileFormatError("the file is empty; expected a CSV header line")
    reader.fieldnames = header
    needed = layout.required_source_columns() if layout else REQUIRED[kind]
    missing = [c for c in needed if c not in header]
    if missing:
        expected = ", ".join(needed if layout else [c for c, _ in FILE_TABLES[kind][0] if c not in ("source",)])
        raise FileFormatError(f"missing column(s) {', '.join(missing)}; a {kind} file has the header: {expected}")
    result = ParseResult()
    seen: dict[tuple, int] = {}
    key_cols = [c for c in FILE_TABLES[kind][1] if c != "source"]
    for line, row in enumerate(reader, start=2):
        if None in row:
            result.rejected.append({"line": line, "reason": "extra_columns", "detail": "the row has more fields than the header", "row": dict(row)})
            continue
        try:
            canonical = layout.canonical(row) if layout else row
            typed = _movement(canonical, source) if kind == "movements" else _reference(kind, canonical)
        except RowError as err:
            result.rejected.append({"line": line, "reason": err.reason, "detail": err.detail, "row": dict(row)})
            continue
        key = tuple(typed[c] for c in key_cols)
        if key in seen:
            previous = result.accepted[seen[key]]
            if previous != typed:
                result.rejected.append({"line": line, "reason": "conflicting_duplicate",
                                        "detail": f"{'/'.join(map(str, key))} appears earlier in the file with other values", "row": dict(row)})
            continue
        seen[key] = len(result.accepted)
        result.accepted.append(typed)
    return result
