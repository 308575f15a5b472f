"""Check the SASRec peer end to end on the DIGINETICA SR-GNN sample (issue 17).

Run by the main venv's (or any) python; the peer itself runs in ``.venv-peer``::

    python benchmarks/peers/diginetica_check.py [--data ../shared/data/diginetica-sample-srgnn]

Protocol: the views file (``;``-separated, header session_id;user_id;item_id;timeframe;eventdate)
is parsed directly; a session's clicks are ordered by timeframe (stable); sessions are ordered by
start time (eventdate + min timeframe, then session id) and the last 20% are the test sessions.
Every prefix position of a test session is a case (prefix ``s[:t]``, target ``s[t]``, ``t >= 1``);
"new" cases are those whose target is not in the prefix. No filtering of rare items or of
targets unseen in training (they count as misses for every model; their share is printed).
Reported: next-item HR@k and MRR@k over all cases and over new cases, for the peer and, for
scale, two count baselines (train popularity; the items that followed the prefix's last item in
train, backfilled by popularity), and wall times.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ for _peer

from _peer import peer_available, peer_name, peer_run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "diginetica-sample-srgnn"


def load_sessions(path: Path) -> list[tuple[float, str, list[str]]]:
    """(start seconds, session id, ordered item ids) per session."""
    clicks: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    dates: dict[str, str] = {}
    with path.open(newline="") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter=";")):
            sid = row["session_id"]
            clicks[sid].append((int(row["timeframe"]), n, row["item_id"]))
            dates[sid] = min(dates.get(sid, row["eventdate"]), row["eventdate"])
    out = []
    for sid, cl in clicks.items():
        cl.sort()
        day = dt.datetime.fromisoformat(dates[sid]).replace(tzinfo=dt.UTC).timestamp()
        out.append((day + cl[0][0] / 1000.0, sid, [item for _, _, item in cl]))
    out.sort(key=lambda x: (x[0], int(x[1]) if x[1].isdigit() else x[1]))
    return out


def metrics(recs: list[list[str]], targets: list[str], mask: list[bool], k: int) -> tuple:
    hits, rr, n = 0, 0.0, 0
    for r, t, m in zip(recs, targets, mask, strict=True):
        if not m:
            continue
        n += 1
        top = r[:k]
        if t in top:
            hits += 1
            rr += 1.0 / (top.index(t) + 1)
    return (hits / n if n else float("nan"), rr / n if n else float("nan"), n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the library's")
    ap.add_argument("--session-max-len", type=int, default=None, help="default: the library's")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    args = ap.parse_args()

    reason = peer_available()
    if reason is not None:
        print(f"skip: {reason}")
        return 1
    path = args.data / "sample_train-item-views.csv" if args.data.is_dir() else args.data
    sessions = load_sessions(path)
    n_test = int(round(len(sessions) * args.test_fraction))
    train = [s for _, _, s in sessions[: len(sessions) - n_test]]
    test = [s for _, _, s in sessions[len(sessions) - n_test :]]
    prefixes, targets = [], []
    for s in test:
        for t in range(1, len(s)):
            prefixes.append(s[:t])
            targets.append(s[t])
    new = [tg not in p for p, tg in zip(prefixes, targets, strict=True)]
    train_items = {i for s in train for i in s}
    unseen = sum(tg not in train_items for tg in targets)
    print(f"{path.name}: {len(sessions)} sessions -> {len(train)} train "
          f"({sum(map(len, train))} clicks, {len(train_items)} items), {len(test)} test; "
          f"{len(prefixes)} cases ({sum(new)} new-to-session); "
          f"{unseen} targets ({unseen / max(1, len(targets)):.1%}) never in train")  # fmt: skip

    pop = [i for i, _ in Counter(i for s in train for i in s).most_common(args.k)]
    follows: dict[str, Counter] = defaultdict(Counter)  # item -> the items clicked right after
    for s in train:
        for a, b in zip(s, s[1:], strict=False):
            follows[a][b] += 1
    transitions = []
    for p in prefixes:
        top = [i for i, _ in follows[p[-1]].most_common(args.k)] if p[-1] in follows else []
        transitions.append((top + [i for i in pop if i not in top])[: args.k])
    rows = [
        ("train popularity", [pop] * len(prefixes), None),
        ("last-item transitions+pop", transitions, None),
    ]

    t0 = time.perf_counter()
    res = peer_run(
        train,
        prefixes,
        k=args.k,
        seed=args.seed,
        epochs=args.epochs,
        session_max_len=args.session_max_len,
    )
    wall = time.perf_counter() - t0
    m = res.meta
    print(f"{peer_name()} (torch {m.get('torch')}): epochs={m['params'].get('epochs')} "
          f"session_max_len={m['params'].get('session_max_len')} "
          f"fit {m['fit_seconds']:.1f} s, recommend {m['recommend_seconds']:.1f} s, "
          f"wall {wall:.1f} s (incl. start-up, I/O); "
          f"{m['n_cold']} prefixes cold (no known item)")  # fmt: skip
    rows.insert(0, (peer_name(), res.recommendations, m))

    k = args.k
    print(f"{'model':<26} {'HR@' + str(k):>8} {'MRR@' + str(k):>8}  "
          f"{'HR@' + str(k) + ' new':>10} {'MRR@' + str(k) + ' new':>10}")  # fmt: skip
    for name, recs, _ in rows:
        hr, mrr, _n = metrics(recs, targets, [True] * len(targets), k)
        hr_new, mrr_new, _n_new = metrics(recs, targets, new, k)
        print(f"{name:<26} {hr:8.4f} {mrr:8.4f}  {hr_new:10.4f} {mrr_new:10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
