"""`inventory-sync import KIND PATH`: parse a CSV, quarantine bad rows with their reason, land the rest.

Good rows and quarantined rows are written in one transaction, so an import is all-or-nothing with
respect to crashes and `received = loaded + duplicates + quarantined` always holds (I-3).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestration.lib import raw
from orchestration.lib.files import FileFormatError, SourceLayout, parse_csv
from orchestration.lib.progress import stage
from orchestration.lib.warehouse import Warehouse


@dataclass
class ImportReport:
    kind: str
    path: Path
    batch_id: str
    received: int
    loaded: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int]

    def summary(self) -> str:
        lines = [
            f"{self.path.name}: {self.received} rows read, {self.loaded} loaded, {self.duplicates} already present, "
            f"{self.quarantined} quarantined (batch {self.batch_id})"
        ]
        for reason, count in sorted(self.reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  quarantined {count} × {reason}")
        if self.quarantined:
            hint = f"\"select * from ops.quarantine where batch_id = '{self.batch_id}'\""  # noqa: S608 - printed, not run
            lines.append(f"  see them with: inventory-sync query --role finance {hint}")
        return "\n".join(lines)


def import_file(
    wh: Warehouse, kind: str, path: Path, source: str = "file", layouts: dict[str, SourceLayout] | None = None
) -> ImportReport:
    """Import one CSV. `layouts` are the file channel's export layouts (default: the bundled registry's)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    # The source names where the rows came from (erp, a store's POS …); when the registry has a layout
    # for it, the file is in that system's export format, otherwise in the canonical one.
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", source):
        raise FileFormatError(f"source {source!r} must be lowercase letters, digits and underscores")
    if layouts is None:
        from orchestration.lib.registry import load_registry

        layouts = load_registry().file_layouts
    layout = layouts.get(source)
    if layout is not None and kind != "movements":
        raise FileFormatError(f"source {source!r} has an export layout for movements only; reference data has one canonical format")
    # On a terminal (stderr): "reading erp.csv (movements) …", "loading 9,812 movements rows …" and
    # a "… done in" line after each; nothing otherwise.
    with stage(f"reading {path.name} ({kind})") as step:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"{path.name} is not UTF-8 text (byte {exc.start}); export it as UTF-8 CSV") from None
        parsed = parse_csv(kind, text, source=source, layout=layout)
        step.note(f"{len(parsed.accepted) + len(parsed.rejected):,} rows, {len(parsed.rejected):,} to quarantine")
    batch_id = uuid.uuid4().hex
    with (stage(f"loading {len(parsed.accepted):,} {kind} rows") as step, wh.connect("loader") as conn,
          conn.transaction()):
        result = raw.load_file_rows(conn, kind, parsed.accepted, batch_id)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into ops.quarantine (source, source_key, reason, detail, payload, batch_id) values (%s, %s, %s, %s, %s, %s)",
                [
                    (f"file:{source}:{kind}", f"{path.name}:{r['line']}", r["reason"], r["detail"],
                     json.dumps(r["row"], default=str).replace("\\u0000", ""), batch_id)
                    for r in parsed.rejected
                ],
            )
        step.note(f"{result.inserted:,} new, {result.received - result.inserted:,} already present, "
                  f"{len(parsed.rejected):,} quarantined")
    reasons: dict[str, int] = {}
    for r in parsed.rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return ImportReport(kind, path, batch_id, len(parsed.accepted) + len(parsed.rejected), result.inserted,
                        result.received - result.inserted, len(parsed.rejected), reasons)
