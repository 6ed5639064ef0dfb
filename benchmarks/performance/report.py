"""Turns the benchmark's raw figures into medians, ratios, target checks, a projection and Markdown.

A helper of ``python -m benchmarks.performance.compare``: :func:`markdown` and :func:`update_doc`
write docs/PERFORMANCE.md's block between the ``perf:begin`` and ``perf:end`` markers. Not run on its
own.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np

BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"
STAGE_NAMES = ("read", "checks", "kmeans", "assign_reduce", "sample", "write")
# The cluster of the projection: 64 executors of 8 cores, a 16-core driver.
CLUSTER_CORES, DRIVER_CORES = 512, 16
TARGET_ROWS, TARGET_DIM = 1_000_000_000, 768


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 3)


def _pipeline_summary(runs: list[dict]) -> dict[str, Any]:
    stages = {name: _median([run["stages"][name] for run in runs]) for name in runs[0]["stages"]}
    loads = [value for run in runs for value in run["load"]]
    return {
        "seconds": _median([run["seconds"] for run in runs]),
        "all_seconds": [run["seconds"] for run in runs],
        "all_costs": [run["kmeans_cost"] for run in runs],
        "stages": stages,
        "kmeans_cost": _median([run["kmeans_cost"] for run in runs]),
        "fit_rows": runs[0]["fit_rows"],
        "iterations": runs[0]["iterations"],
        "load": [min(loads), max(loads)],
    }


def _assignment(results: dict, gemm_gflops: float) -> dict[str, Any]:
    s = results["settings"]
    flops = 2.0 * s["rows"] * s["k"] * s["dim"]
    floor = flops / (gemm_gflops * 1e9)
    table = {}
    for batch, row in results["compare"]["assignment"].items():
        entry = dict(row) | {"gemm_floor_seconds": round(floor, 3)}
        entry["assign_kernel_seconds"] = round(row["assign_seconds"] - row["scan_arrow_seconds"], 3)
        entry["assign_floor_share"] = round(floor / row["assign_seconds"], 3)
        table[batch] = entry
    return table


def _marginal_core_seconds_per_row(summary: dict, stage: str, cores: int) -> float:
    """Core-seconds per extra row of a stage, from the n and 2n runs: fixed costs (job start,
    small writes) do not grow with n and must not be scaled to a billion rows. Falls back to the
    stage's whole time per row when noise makes the difference negative."""
    scaling, n = summary.get("scaling"), summary["rows"]
    project = summary["pipelines"][summary["best_project"]]
    if scaling:
        extra = scaling["2n"]["stages"][stage] - scaling["n"]["stages"][stage]
        if extra > 0:
            return extra * cores / n
    return project["stages"][stage] * cores / n


def _projection(results: dict, summary: dict) -> dict[str, Any]:
    """Core-seconds per unit of work measured here, scaled to 1e9 x 768 on CLUSTER_CORES cores.

    Units: embedding bytes for the three full scans (the fit sample, the assignment pass with its
    Arrow transfer, the subset's join), multiply-adds for the assignment kernel and the fit, rows
    for the id checks and the sampling pass (marginal rates from the n and 2n runs). Assumes the
    work spreads evenly over the cores and that storage delivers bytes as fast as the cores decode
    them.
    """
    s = results["settings"]
    cores = int(results["versions"]["cpus"])
    project = summary["pipelines"][summary["best_project"]]
    batch = next(iter(summary["assignment"].values()))
    n, d, k = s["rows"], s["dim"], s["k"]
    bytes_ratio = (TARGET_ROWS * TARGET_DIM) / (n * d)
    scan_core_s = batch["scan_seconds"] * cores * bytes_ratio
    arrow_core_s = batch["scan_arrow_seconds"] * cores * bytes_ratio
    kernel_core_s = max(batch["assign_kernel_seconds"], 0.0) * cores
    fit_rows = project["fit_rows"]
    # The k-means stage scans all rows once to draw its sample; the rest is the fit, which ran on
    # the driver with --local-threads threads.
    fit_core_s = max(project["stages"]["kmeans"] - batch["scan_seconds"], 0.0) * s["local_threads"]
    fit_flops = 2.0 * fit_rows * k * d * project["iterations"]
    per_row = {stage: _marginal_core_seconds_per_row(summary, stage, cores) for stage in ("checks", "sample")}
    out: dict[str, Any] = {"scan_tib": round(4.0 * TARGET_ROWS * TARGET_DIM / 2**40, 2)}
    for target_k in (1000, 10_000):
        flops_ratio = (TARGET_ROWS * target_k * TARGET_DIM) / (n * k * d)
        fit_rows_there = fit_rows / k * target_k
        fit_ratio = (fit_rows_there * target_k * TARGET_DIM) / (fit_rows * k * d)
        rows = [
            ("id checks (shuffle of the ids)", per_row["checks"] * TARGET_ROWS, "cluster", "shuffle"),
            ("fit sample: scan all embeddings", scan_core_s, "cluster", "I/O"),
            ("k-means on the sample", fit_core_s * fit_ratio, "driver", "driver compute"),
            ("assignment: scan + Arrow to Python", arrow_core_s, "cluster", "I/O, Arrow"),
            ("assignment: nearest-center GEMM", kernel_core_s * flops_ratio, "cluster", "compute"),
            ("per-cluster reduce (k rows)", 0.0, "cluster", "none (tiny shuffle)"),
            ("sampling pass (cached assignments)", per_row["sample"] * TARGET_ROWS, "cluster", "compute"),
            ("subset: join the m draws back (a scan)", scan_core_s, "cluster", "I/O"),
        ]
        table = []
        for name, core_seconds, where, bottleneck in rows:
            width = DRIVER_CORES if where == "driver" else CLUSTER_CORES
            table.append(
                {
                    "stage": name,
                    "core_hours": round(core_seconds / 3600, 2),
                    "wall_seconds": round(core_seconds / width, 1),
                    "runs_on": f"{where} ({width} cores)",
                    "bottleneck": bottleneck,
                }
            )
        out[str(target_k)] = {
            "stages": table,
            "wall_seconds": round(sum(row["wall_seconds"] for row in table), 1),
            "fit_sample_rows": int(fit_rows_there),
            "fit_sample_gib": round(fit_rows_there * TARGET_DIM * 4 / 2**30, 2),
            "fit_gflops_per_core": round(fit_flops / max(fit_core_s, 1e-9) / 1e9, 1),
        }
    return out


def summarize(results: dict) -> dict[str, Any]:
    s = results["settings"]
    pipelines = {key: _pipeline_summary(runs) for key, runs in results["compare"]["runs"].items() if runs}
    # Spark runs one single-threaded task per core: the limit is the best 1-thread rate (the
    # assignment's shape or a square product) times the cores.
    best = max(results["gemm"]["assign_shape_gflops_1t"], results["gemm"]["square_gflops_1t"])
    gemm = round(best * int(results["versions"]["cpus"]), 1)
    summary: dict[str, Any] = {"pipelines": pipelines, "gemm_limit_gflops": gemm, "rows": s["rows"]}
    projects = [key for key in pipelines if key.startswith("project")]
    summary["best_project"] = min(projects, key=lambda key: pipelines[key]["seconds"], default=None)
    naive = pipelines.get("naive")
    faiss_keys = [key for key in pipelines if key.startswith("faiss")]
    faiss = min((pipelines[key] for key in faiss_keys), key=lambda value: value["seconds"], default=None)
    summary["faiss_reference"] = next((key for key in faiss_keys if pipelines[key] is faiss), None)
    for value in pipelines.values():
        if naive:
            value["naive_over_this"] = round(naive["seconds"] / value["seconds"], 2)
            value["cost_vs_naive"] = round(value["kmeans_cost"] / naive["kmeans_cost"] - 1.0, 4)
        if faiss:
            value["this_over_faiss"] = round(value["seconds"] / faiss["seconds"], 2)
    if results["compare"]["assignment"]:
        summary["assignment"] = _assignment(results, gemm)
    if "scaling" in results:
        one, two = (_scale_summary(results["scaling"][label]) for label in ("n", "2n"))
        summary["scaling"] = {
            "n": one,
            "2n": two,
            "ratio": round(two["seconds"] / one["seconds"], 3),
            "stage_ratios": {
                name: round(two["stages"][name] / one["stages"][name], 3) if one["stages"][name] > 0 else None
                for name in one["stages"]
            },
        }
    embed = results.get("embed", {}).get("sentence-transformers")
    if embed:
        summary["embed_ratio"] = embed.get("ratio_to_chunk_loop")
    summary["targets"] = _targets(summary)
    if "assignment" in summary and summary["best_project"]:
        summary["projection"] = _projection(results, summary)
    return summary


def _scale_summary(runs: list[dict]) -> dict[str, Any]:
    return {
        "seconds": _median([run["seconds"] for run in runs]),
        "all_seconds": [run["seconds"] for run in runs],
        "stages": {name: _median([run["stages"][name] for run in runs]) for name in runs[0]["stages"]},
        "memory": {
            name: _median([run["memory"][name] for run in runs])
            for name in runs[0]["memory"]
            if name.endswith("_mib")
        },
        "load": [value for run in runs for value in run["load"]],
    }


def _targets(summary: dict) -> list[dict[str, Any]]:
    out = []
    for key, value in summary["pipelines"].items():
        if not key.startswith("project"):
            continue
        if "naive_over_this" in value:
            out.append(
                _target(
                    f"{key}: naive time / this time",
                    ">= 5",
                    value["naive_over_this"],
                    value["naive_over_this"] >= 5,
                )
            )
            cost = value["cost_vs_naive"]
            out.append(_target(f"{key}: k-means cost vs naive", "<= +1%", f"{cost:+.2%}", cost <= 0.01))
        if "this_over_faiss" in value:
            ratio = value["this_over_faiss"]
            out.append(_target(f"{key}: this time / faiss time", "<= 2", ratio, ratio <= 2))
    for batch, row in summary.get("assignment", {}).items():
        share = row["assign_floor_share"]
        out.append(
            _target(
                f"assignment pass (batches of {batch}) at the GEMM limit",
                ">= 50%",
                f"{share:.0%}",
                share >= 0.5,
            )
        )
    scaling = summary.get("scaling")
    if scaling:
        out.append(_target("t(2n) / t(n)", "<= 2.2", scaling["ratio"], scaling["ratio"] <= 2.2))
        # Peak figures follow the garbage collector; what the driver keeps is the Python process's
        # peak and the JVM heap that survives a full GC (10% or 64 MiB of slack for noise).
        for name in ("python_peak_rss_mib", "jvm_heap_after_gc_mib"):
            one, two = scaling["n"]["memory"][name], scaling["2n"]["memory"][name]
            out.append(
                _target(
                    f"driver {name[:-4].replace('_', ' ')}, 2n vs n",
                    "independent of n",
                    f"{one:.0f} -> {two:.0f} MiB",
                    two - one <= max(0.1 * one, 64.0),
                )
            )
    if summary.get("embed_ratio") is not None:
        ratio = summary["embed_ratio"]
        out.append(_target("embed stage / plain encode loop", ">= 0.9", ratio, ratio >= 0.9))
    return out


def _target(name: str, goal: str, measured: Any, met: bool) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "met": bool(met)}


def text(summary: dict) -> str:
    lines = ["", "pipeline              median s   k-means cost    vs naive cost   naive/this  this/faiss"]
    for key, value in summary["pipelines"].items():
        lines.append(
            f"{key:<20} {value['seconds']:9.1f}   {value['kmeans_cost']:14.6g}   "
            f"{value.get('cost_vs_naive', float('nan')):+10.2%}   {value.get('naive_over_this', float('nan')):9.2f}"
            f"   {value.get('this_over_faiss', float('nan')):9.2f}"
        )
    lines.append("")
    for target in summary["targets"]:
        mark = "met" if target["met"] else "NOT met"
        lines.append(f"{target['target']:<58} {target['goal']:>18}  {target['measured']!s:>24}  {mark}")
    return "\n".join(lines)


def _against_naive(p: dict) -> str:
    """The cost and time columns against the naive pipeline, or why they are empty."""
    if "naive_over_this" not in p:
        return "naive not run | naive not run"
    return f"{p['cost_vs_naive']:+.2%} | {p['naive_over_this']:.2f}"


def _seconds(value: float) -> str:
    return f"{value:,.1f}"


def markdown(results: dict, summary: dict) -> str:
    """The generated block of docs/PERFORMANCE.md, from the raw results and their summary.

    Why this is long: it is the template of one Markdown page section (settings, versions, the
    pipelines' table, the assignment breakdown, the n/2n scaling, the embed stage, the targets, the
    projection), each part a few lines appended in the order the page shows them; split into
    functions it would read as the same list of appends, spread out.
    """
    s, v = results["settings"], results["versions"]
    command = (
        f"python -m benchmarks.performance.compare --rows {s['rows']} --dim {s['dim']} --k {s['k']} --sample-size "
        f"{s['sample_size']} --repeats {s['repeats']} --once {s['once']} --engines {s['engines']}"
    )
    if "pipelines" in s:  # recorded since runs could leave some out
        command += f" --pipelines {s['pipelines']}"
    lines = [
        f"Measured {dt.date.today():%Y-%m-%d} with `{command}` ({results['benchmark_seconds'] / 60:.0f} min in all):",
        f"{s['rows']:,} rows x {s['dim']} float32, a {s['components']}-component imbalanced Gaussian mixture, "
        f"k = {s['k']}, m = {s['sample_size']:,}, at most {s['max_iter']} Lloyd iterations everywhere; "
        f"{v['cpus']} cores ({v['processor']}), Spark local[*], pyspark {v['pyspark']}, numpy {v['numpy']}, "
        f"scikit-learn {v['scikit-learn']}, faiss {v['faiss']}. Load average (1 min) at start "
        f"{results['load_start']}, at end {results['load_end']}; the machine was shared, so every figure "
        "carries the load it ran under.",
        "",
        "| pipeline | median s | runs (s) | fit rows | iterations | k-means cost (median) | costs (seeds 0, 1, ...) | cost vs naive | naive / this | this / faiss | load |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for key, p in summary["pipelines"].items():
        lines.append(
            f"| {key} | {_seconds(p['seconds'])} | {', '.join(_seconds(x) for x in p['all_seconds'])} | "
            f"{p['fit_rows']:,} | {p['iterations']} | {p['kmeans_cost']:.6g} | "
            f"{', '.join(f'{c:.4g}' for c in p['all_costs'])} | "
            f"{_against_naive(p)} | "
            f"{p.get('this_over_faiss', float('nan')):.2f} | {p['load'][0]}-{p['load'][1]} |"
        )
    lines += ["", "Stages, median seconds:", "", "| pipeline | " + " | ".join(STAGE_NAMES) + " |"]
    lines.append("| --- |" + " ---: |" * len(STAGE_NAMES))
    for key, p in summary["pipelines"].items():
        cells = [_seconds(p["stages"][name]) if name in p["stages"] else "" for name in STAGE_NAMES]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    g = results["gemm"]
    lines += [
        "",
        f"GEMM, float32 GFLOP/s (best of 5; the assignment's shape is 10,000 x {s['dim']} times {s['dim']} x {s['k']}):",
        "",
        "| OpenBLAS settings | kernel | assign shape, 1 thread | 2 threads | 2048^2, 1 thread | 2 threads | nearest_centers, 1 thread |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, row in (
        ("as set (Spark's workers run so)", g),
        ("unset", results.get("gemm_without_openblas_env")),
    ):
        if row:
            kernel = ", ".join(str(b.get("architecture")) for b in row["blas"])
            env = ", ".join(f"{key}={value}" for key, value in row["openblas_env"].items() if value)
            lines.append(
                f"| {label}: {env or 'none'} | {kernel} | {row['assign_shape_gflops_1t']} | "
                f"{row['assign_shape_gflops_2t']} | {row['square_gflops_1t']} | {row['square_gflops_2t']} | "
                f"{row['kernel_gflops_1t']} |"
            )
    if "assignment" in summary:
        lines += [
            "",
            f"The assignment pass alone (median of {s['repeats']} runs, written to Spark's noop sink), "
            f"{s['rows']:,} x {s['k']} x {s['dim']} multiply-adds; the GEMM floor is that work at "
            f"{summary['gemm_limit_gflops']} GFLOP/s (the best 1-thread rate as set, times the cores: Spark "
            "runs one single-threaded task per core). Kernel = pass - (scan + Arrow):",
            "",
            "| Arrow batch rows | scan (JVM) | scan + Arrow to Python | assignment pass | its kernel | "
            "GEMM floor | floor / pass | load |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for batch, row in summary["assignment"].items():
            lines.append(
                f"| {int(batch):,} | {row['scan_seconds']} | {row['scan_arrow_seconds']} | "
                f"{row['assign_seconds']} | {row['assign_kernel_seconds']} | {row['gemm_floor_seconds']} | "
                f"{row['assign_floor_share']:.0%} | {row['load'][0]}-{row['load'][1]} |"
            )
    scaling = summary.get("scaling")
    if scaling:
        one, two = scaling["n"], scaling["2n"]
        lines += [
            "",
            f"The select job alone (k-means engine: {s['scale_engine']}) at n and 2n, each run in a fresh process after a "
            f"warm-up, alternated {s['scale_repeats']} times (medians); driver peaks counted from the end "
            "of the warm-up:",
            "",
            f"| | n = {s['rows']:,} | 2n = {2 * s['rows']:,} | 2n / n |",
            "| --- | ---: | ---: | ---: |",
            f"| total seconds | {one['seconds']} | {two['seconds']} | {scaling['ratio']} |",
            f"| runs (s) | {', '.join(map(str, one['all_seconds']))} | {', '.join(map(str, two['all_seconds']))} | |",
        ]
        for name, ratio in scaling["stage_ratios"].items():
            lines.append(f"| {name} seconds | {one['stages'][name]} | {two['stages'][name]} | {ratio} |")
        for name, a in one["memory"].items():
            b = two["memory"][name]
            lines.append(f"| {name[:-4].replace('_', ' ')} MiB | {a} | {b} | {b / a:.3f} |")
        loads = [f"{min(x['load'])}-{max(x['load'])}" for x in (one, two)]
        lines.append(f"| load average | {loads[0]} | {loads[1]} | |")
    if "embed" in results:
        st = results["embed"].get("sentence-transformers", {})
        lines += [
            "",
            f"Embed stage (from benchmarks.performance.embed_throughput, {results['embed'].get('rows')} rows): Spark "
            f"{st.get('spark_warm_rows_per_s')} rows/s, plain encode loop {st.get('baseline_chunk_loop_rows_per_s')} "
            f"rows/s, ratio {st.get('ratio_to_chunk_loop')}.",
        ]
    lines += ["", "Targets:", "", "| target | goal | measured | met |", "| --- | --- | --- | --- |"]
    for t in summary["targets"]:
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    if "projection" in summary:
        proj = summary["projection"]
        lines += [
            "",
            f"Projection to {TARGET_ROWS:,} rows x {TARGET_DIM} ({proj['scan_tib']} TiB of float32 per full scan) "
            f"on {CLUSTER_CORES} executor cores and a {DRIVER_CORES}-core driver, for {summary['best_project']} "
            "(the fastest engine above): core-seconds per byte, per multiply-add and per row measured "
            "here, times the work there, spread evenly over the cores:",
        ]
        for target_k, row in ((key, value) for key, value in proj.items() if isinstance(value, dict)):
            lines += [
                "",
                f"k = {int(target_k):,}: fit sample {row['fit_sample_rows']:,} rows ({row['fit_sample_gib']} GiB on the driver), "
                f"about {row['wall_seconds'] / 60:.0f} min in all.",
                "",
                "| stage | core-hours | wall seconds | runs on | bottleneck |",
                "| --- | ---: | ---: | --- | --- |",
            ]
            for stage in row["stages"]:
                lines.append(
                    f"| {stage['stage']} | {stage['core_hours']} | {stage['wall_seconds']:,} | "
                    f"{stage['runs_on']} | {stage['bottleneck']} |"
                )
    return "\n".join(lines)


def update_doc(path: Path, block: str) -> None:
    """Replaces the text between the markers (or appends a marked block when there is none)."""
    generated = f"{BEGIN}\n<!-- written by benchmarks/performance/compare.py; edits here are overwritten -->\n{block}\n{END}"
    page = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    page = (
        pattern.sub(lambda _: generated, page) if pattern.search(page) else page.rstrip() + "\n\n" + generated
    )
    path.write_text(page.rstrip() + "\n", encoding="utf-8")
