"""Criteo display-advertising logs (Kaggle ``train.txt`` layout) -> arrays and the data contract.

Source: one TAB-separated line per ad impression, no header, 40 fields::

    label  I1..I13 (integer counts, may be empty or negative)  C1..C26 (hashed categories, may
    be empty)

Two readers:

- :func:`read_criteo` -> :class:`CriteoFrame` (labels, dense, categorical arrays) for CTR
  training and the ranking benchmark. Strict: the first malformed line raises
  ``DataFileError`` naming the file and line.
- :func:`load_criteo` -> ``SourceTables`` for ``funnel ingest --format criteo``. Lenient:
  malformed lines go to ``rejected``.

Contract mapping (a best effort: the features are anonymised and the log has no time):

- each line -> one ``impression`` event; ``request_id`` = ``"<file stem>:<line>"``,
  ``position`` = null (not in the source); a line with label 1 -> additionally a ``click``
  with the same ts, user, item and request id;
- ``ts`` is SYNTHETIC: ``CRITEO_EPOCH`` (2014-01-01 UTC) + (line - 1) seconds. The source has
  no timestamps (only file order, which follows time); so only the order means anything;
- ``item_id`` = ``"ct-i-" + C11``: in the data, C11 determines C13 (a many-to-one hierarchy,
  like ad -> campaign), the shape of ad-side ids, so C11 stands for the ad and C13 (the items'
  ``category``) for its parent. Empty C11 -> ``"ct-i-none"``;
- ``user_id`` = ``"ct-u-" + blake2b(C3|C4|C12|C16|C21|C24)``: these six are the
  highest-cardinality fields, are empty together, and C3 determines the other five, the
  signature of a user-profile lookup. All six empty -> ``"ct-u-none"``;
- ``market`` = ``"criteo"``; ``event_id`` = content hash of criteo|user|item|ts|type, salted
  with the raw line so two files' line N do not collide;
- ``items``: one row per distinct item with ``category`` = C13.

Rejected: wrong field count, label other than 0/1, non-integer dense value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._fields import Fields, as_float, ms_to_ts, prefixed
from funnel.data.loaders._ids import content_ids
from funnel.data.loaders._read import read_lines
from funnel.data.loaders._tables import concat, contract_table, first_rows, sort_events
from funnel.data.loaders.base import SourceTables
from funnel.exceptions import DataFileError

FAMILY: Final = "criteo"
MARKET: Final = "criteo"
DENSE: Final = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL: Final = tuple(f"C{i}" for i in range(1, 27))
COLUMNS: Final = ("label", *DENSE, *CATEGORICAL)
USER_FIELDS: Final = ("C3", "C4", "C12", "C16", "C21", "C24")
ITEM_FIELD: Final = "C11"
ITEM_PARENT_FIELD: Final = "C13"
CRITEO_EPOCH: Final = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class CriteoFrame:
    """A Criteo file as arrays, row i = data line i + 1."""

    labels: np.ndarray  # (n,) int8, 0/1
    dense: np.ndarray  # (n, 13) float32, NaN where empty
    categorical: np.ndarray  # (n, 26) object (str), "" where empty

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _parse(path: Path) -> Fields:
    _, lines = read_lines(Path(path), header=False)
    f = Fields(lines, "\t", COLUMNS)
    f.require_in("label", ("0", "1"))
    for name in DENSE:
        f.require_int(name, allow_empty=True)
    return f


def read_criteo(path: Path | str) -> CriteoFrame:
    """Read a Criteo TSV into arrays; raise ``DataFileError`` at the first malformed line.

    Parameters
    ----------
    path : the TSV file (``.gz`` is decompressed).

    Returns
    -------
    CriteoFrame with ``labels`` (n,) int8, ``dense`` (n, 13) float32 with NaN for empty values,
    ``categorical`` (n, 26) object array of str with ``""`` for empty values.

    Example
    -------
    >>> frame = read_criteo("train.txt")  # doctest: +SKIP
    >>> frame.dense.shape, frame.labels.mean()  # doctest: +SKIP
    """
    f = _parse(Path(path))
    rejected = f.rejected()
    if rejected.num_rows:
        first = rejected.slice(0, 1).to_pylist()[0]
        where = f" field {first['field']}:" if first["field"] else ""
        raise DataFileError(str(path), f"line {first['source_row']}:{where} {first['reason']}")
    n = len(f)
    labels = pc.cast(f["label"], pa.int8()).to_numpy(zero_copy_only=False)
    dense = np.empty((n, len(DENSE)), dtype=np.float32)
    for j, name in enumerate(DENSE):
        dense[:, j] = as_float(f[name], pa.float32()).to_numpy(zero_copy_only=False)
    categorical = np.empty((n, len(CATEGORICAL)), dtype=object)
    for j, name in enumerate(CATEGORICAL):
        categorical[:, j] = f[name].to_numpy(zero_copy_only=False)
    return CriteoFrame(labels=labels.astype(np.int8), dense=dense, categorical=categorical)


def _user_ids(f: Fields) -> pa.Array:
    joined = pc.binary_join_element_wise(*(f[c] for c in USER_FIELDS), "|").to_pylist()
    empty = "|" * (len(USER_FIELDS) - 1)
    return pa.array(
        [
            "ct-u-none"
            if key == empty
            else "ct-u-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
            for key in joined
        ],
        pa.string(),
    )


def load_criteo(path: Path) -> SourceTables:
    """Read a Criteo TSV as contract events and items (see the module docstring)."""
    path = Path(path)
    f = _parse(path)
    ad = f[ITEM_FIELD]
    item_id = prefixed("ct-i-", pc.if_else(pc.equal(ad, ""), "none", ad))
    user_id = _user_ids(f)
    epoch_ms = int(CRITEO_EPOCH.timestamp() * 1000)
    ts_ms = pc.add(pc.multiply(pc.subtract(f.rows, 1), 1000), epoch_ms)
    request_id = prefixed(f"{path.stem}:", pc.cast(f.rows, pa.string()))

    parts = []
    clicked = pc.equal(f["label"], "1")
    for event_type, mask in (("impression", None), ("click", clicked)):

        def pick(a: pa.Array, mask: pa.Array | None = mask) -> pa.Array:
            return a if mask is None else a.filter(mask)

        users, items, ts = pick(user_id), pick(item_id), pick(ts_ms)
        ids = content_ids(FAMILY, users, items, ts, event_type, salt=pick(f.raw))
        parts.append(
            contract_table(
                "events",
                {
                    "event_id": ids,
                    "ts": ms_to_ts(ts),
                    "user_id": users,
                    "event_type": event_type,
                    "item_id": items,
                    "request_id": pick(request_id),
                    "market": MARKET,
                },
                path=path,
                rows=pick(f.rows),
            )
        )
    events = sort_events(concat(parts))

    first = first_rows(
        pa.table({"item_id": item_id, "category": f[ITEM_PARENT_FIELD], "row": f.rows}),
        "item_id",
    )
    items_table = contract_table(
        "items",
        {
            "item_id": first["item_id"],
            "category": pc.if_else(pc.equal(first["category"], ""), None, first["category"]),
            "market": MARKET,
        },
        path=path,
        rows=first["row"],
    )
    return SourceTables(items=items_table, events=events, rejected=f.rejected())
