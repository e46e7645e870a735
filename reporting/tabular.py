"""Report documents as CSV (SPEC §4, §12): one flattening rule for every document.

A document's rows are its list of period rows (`periods`), of cohort cells (`cohorts`,
one line per cohort and month), or of movements (`movements`); a document with none of
these (the summary) is one row of its own keys. Each row becomes one line whose header is
its JSON keys in order, nested objects flattened with dots (`expansion_by_kind.seats`),
a list as one cell of its items separated by spaces (an object item as compact JSON), a
null as an empty cell, booleans as `true`/`false` like JSON. A grouped document (with
`groups`, SPEC §11) adds the columns `group.key` and `group.value`: the whole's rows come
first with both empty, then each group's rows. Quoting is RFC 4180 (`csv` module,
CRLF line ends). Pure: documents in, text out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

#: The list keys that hold a document's rows, in the order they are looked for.
ROW_LISTS = ("periods", "cohorts", "movements")
GROUP_COLUMNS = ("group.key", "group.value")

Row = dict[str, Any]


def rows(document: Mapping[str, Any]) -> list[Row]:
    """The document's rows, flattened (`expansion_by_kind.seats` …), before grouping."""
    for key in ROW_LISTS:
        found = document.get(key)
        if isinstance(found, list):
            if key == "cohorts":
                return [flatten(cell) for cell in _cohort_cells(found)]
            return [flatten(row) for row in found]
    whole = {k: v for k, v in document.items() if k != "groups"}
    return [flatten(whole)]


def _cohort_cells(cohorts: Sequence[Mapping[str, Any]]) -> Iterator[Row]:
    """One line per cohort and month: the cohort's own keys, then the month's."""
    for cohort in cohorts:
        own = {k: v for k, v in cohort.items() if k != "months"}
        for month in cohort.get("months") or ():
            yield {**own, **{f"month.{k}" if k in own else k: v for k, v in month.items()}}


def flatten(row: Mapping[str, Any], prefix: str = "") -> Row:
    """Nested objects become dotted keys; everything else keeps its key, in order."""
    flat: Row = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def cell(value: Any) -> str:
    """A JSON value as one CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(_item(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, separators=(",", ":"), sort_keys=False)
    return str(value)


def _item(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=False)
    return cell(value)


def table(document: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and the lines of the document's CSV, as cells."""
    groups = document.get("groups")
    lines: list[Row] = [dict.fromkeys(GROUP_COLUMNS, None) | r for r in rows(document)]
    if isinstance(groups, list):
        for group in groups:
            extra = {"group.key": group.get("key"), "group.value": group.get("value")}
            own = {k: v for k, v in group.items() if k not in ("key", "value")}
            lines.extend(extra | r for r in rows(own))
    else:
        lines = [{k: v for k, v in r.items() if k not in GROUP_COLUMNS} for r in lines]
    header: list[str] = []
    seen: set[str] = set()
    for line in lines:  # rows of a document share their keys; a union keeps any extra
        for key in line:
            if key not in seen:
                seen.add(key)
                header.append(key)
    return header, [[cell(line.get(k)) for k in header] for line in lines]


def to_csv(document: Mapping[str, Any]) -> str:
    """The document as CSV text (RFC 4180: CRLF line ends, quotes where needed)."""
    header, body = table(document)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue()
