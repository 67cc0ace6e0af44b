"""Building blocks shared by the suites: schema mapping, null-safe ranges and finiteness.

Two lessons from reliability.md are encoded here once so no suite can forget them:
- GX column-map expectations drop nulls before testing (§2.8), so every range or set test comes
  paired with a not-null test (`not_null_between`, `not_null_in_set`).
- Postgres `numeric` accepts `NaN` and `±Infinity`, and `NaN` sorts above every number, so a lone
  `min_value` would pass it (B-NAN); `finite()` rejects them with one SQL expectation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import great_expectations as gx
import great_expectations.expectations as gxe

CRITICAL = "critical"  # a failure is an ERROR-severity check failure (blocks, when the check is blocking)
WARNING = "warning"  # a failure is a WARN-severity check failure (never blocks)


@dataclass(frozen=True)
class Schemas:
    """Where the layers live. Tests point the suites at scratch schemas; production uses the defaults."""

    raw: str = "raw"
    staging: str = "staging"
    intermediate: str = "intermediate"
    marts: str = "marts"

    def as_dict(self) -> Mapping[str, str]:
        return {"raw": self.raw, "staging": self.staging, "intermediate": self.intermediate, "marts": self.marts}


DEFAULT_SCHEMAS = Schemas()


def sql(template: str, schemas: Schemas) -> str:
    """Fill `{raw}`/`{marts}`/… with schema names and keep `{batch}` for GX to substitute."""
    return " ".join(template.format(batch="{batch}", **schemas.as_dict()).split())


def rows(query: str, description: str, severity: str = CRITICAL) -> gxe.UnexpectedRowsExpectation:
    """A cross-column or aggregate rule: the query returns exactly the offending rows."""
    return gxe.UnexpectedRowsExpectation(unexpected_rows_query=query, description=description, severity=severity)


def not_null(columns: Sequence[str], severity: str = CRITICAL) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c, severity=severity) for c in columns]


def not_null_between(
    column: str,
    min_value: float | None = None,
    max_value: float | None = None,
    *,
    strict_min: bool = False,
    strict_max: bool = False,
    severity: str = CRITICAL,
) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column, severity=severity),
        gxe.ExpectColumnValuesToBeBetween(
            column=column,
            min_value=min_value,
            max_value=max_value,
            strict_min=strict_min,
            strict_max=strict_max,
            severity=severity,
        ),
    ]


def not_null_in_set(column: str, values: Sequence[str], severity: str = CRITICAL) -> list[gxe.Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column, severity=severity),
        gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values), severity=severity),
    ]


def finite(columns: Sequence[str], keys: Sequence[str], severity: str = CRITICAL) -> gxe.UnexpectedRowsExpectation:
    """No `NaN`, `Infinity` or `-Infinity` in any of `columns` (nulls are left to the not-null tests)."""
    cond = " or ".join(f"{c} in ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric)" for c in columns)
    # NaN is cast to text so the failing-row sample shows it (drivers turn a numeric NaN into null/float).
    shown = ", ".join([*keys, *(f"{c}::text as {c}" for c in columns)])
    return rows(
        f"select {shown} from {{batch}} where {cond}",  # noqa: S608 - column names from the suite code
        f"{', '.join(columns)} are finite numbers (no NaN or ±Infinity)",
        severity,
    )


def suite(name: str, expectations: Sequence[gxe.Expectation | Sequence[gxe.Expectation]], meta: dict) -> gx.ExpectationSuite:
    flat: list[gxe.Expectation] = []
    for item in expectations:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    return gx.ExpectationSuite(name=name, expectations=flat, meta=meta)
