"""The HTML report: rendered from plain numbers, written by a real selection, and shown by Chromium."""

import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.settings import SelectConfig
from spark_sensitivity.workflows.report import (
    bounded_sample,
    check_loss_column,
    principal_plane,
    true_mean_loss,
)
from spark_sensitivity.workflows.report_render import LossComparison, ReportData, render
from spark_sensitivity.workflows.select import run_select

FIGURES = ("cluster_shares.png", "cluster_sizes.png", "projection.png", "sensitivity.png", "weights.png")
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]


class _Page(HTMLParser):
    """The text of every element with an id, the images' attributes, and all visible text."""

    def __init__(self, markup: str):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes)
        elif tag in ("td", "th"):
            self._open.append(attributes.get("id", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self._open and self._open[-1]:
            self.by_id[self._open[-1]] = self.by_id.get(self._open[-1], "") + data


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A Gaussian mixture with a per-row loss that varies between and within clusters."""
    path = tmp_path_factory.mktemp("report-input") / "mixture"
    write_gaussian_mixture(path, n=4000, dim=6, clusters=5, seed=11, rows_per_file=2000)
    for part in sorted(path.glob("*.parquet")):
        data = pq.read_table(part)
        vectors = np.stack(data["embedding"].to_numpy(zero_copy_only=False)).astype(np.float64)
        loss = np.log1p((vectors**2).mean(axis=1))
        pq.write_table(data.append_column("loss", pa.array(loss)), part)
    return path


@pytest.fixture(scope="module")
def selection(spark, table, tmp_path_factory):
    """A real selection through the command line, with the report and a loss column."""
    out = tmp_path_factory.mktemp("report-output") / "selection"
    args = ["select", "--input", str(table), "--k", "8", "--sample-size", "300", "--seed", "5"]
    # --drop-vector: the report then looks the shown rows' embeddings up in the input.
    args += ["--output", str(out), "--drop-vector", "--report", "--loss-col", "loss", "--quiet"]
    args += ["--report-col", "component"]
    assert main(args) == 0
    return out, json.loads((out / "manifest.json").read_text())


def _data(loss: LossComparison | None) -> ReportData:
    rng = np.random.default_rng(0)
    return ReportData(
        n=1000,
        n_valid=1000,
        k=3,
        m=50,
        subset_rows=48,
        kmeans_cost=1234.5678,
        sum_of_weights=1010.0,
        cluster_sizes=np.array([700, 250, 50]),
        cluster_costs=np.array([600.0, 400.0, 234.5678]),
        cluster_draws=np.array([30, 20, 0]),  # the smallest cluster got no draw
        cluster_weights=np.array([700.0, 310.0, 0.0]),
        population_xy=rng.normal(size=(400, 2)),
        population_sensitivity=rng.uniform(1e-3, 2e-2, size=400),
        selected_xy=rng.normal(size=(48, 2)),
        selected_sensitivity=rng.uniform(1e-3, 2e-2, size=48),
        selected_count=np.ones(48),
        selected_weight=rng.uniform(5, 40, size=48),
        centers_xy=rng.normal(size=(3, 2)),
        explained_variance=(0.6, 0.3),
        loss=loss,
        run_facts=[("seed", "7")],
    )


def test_render_from_plain_numbers():
    files = render(_data(LossComparison("loss", true_mean=2.0, estimate=2.1, ratio_estimate=1.9)))
    assert sorted(files) == sorted([*FIGURES, "index.html"])
    for name in FIGURES:
        assert _png_size(files[name]) == (800, 500), name
        assert len(files[name]) > 10_000, f"{name} looks empty"
    page = _Page(files["index.html"].decode())
    assert sorted(image["src"] for image in page.images) == sorted(FIGURES)  # relative, next to the page
    assert "http" not in files["index.html"].decode()  # self-contained: nothing fetched
    assert page.by_id["kmeans-cost"] == "1,234.57"
    assert page.by_id["n"] == "1,000" and page.by_id["k"] == "3" and page.by_id["m"] == "50"
    assert page.by_id["loss-true"] == "2" and page.by_id["loss-estimate"] == "2.1"
    assert page.by_id["loss-error"] == "5.000%" and page.by_id["loss-ratio-error"] == "5.000%"
    assert page.by_id["fact-0"] == "7"
    without_loss = render(_data(None))["index.html"].decode()
    assert "No loss column was given" in without_loss and 'id="loss-true"' not in without_loss


def test_principal_plane_finds_the_directions_of_largest_spread():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(5000, 4)) * np.array([1.0, 0.1, 3.0, 0.1]) + 10.0
    mean, basis, (first, second) = principal_plane(points)
    assert np.allclose(mean, 10.0, atol=0.1)
    assert abs(abs(basis[0, 2]) - 1) < 1e-3 and abs(abs(basis[1, 0]) - 1) < 1e-2
    assert first == pytest.approx(9 / 10.02, abs=0.02) and second == pytest.approx(1 / 10.02, abs=0.02)
    _, flat, shares = principal_plane(rng.normal(size=(50, 1)))
    assert flat[1].tolist() == [0.0] and shares == (1.0, 0.0)


def test_bounded_sample_is_capped_deterministic_and_uniform(spark):
    df = spark.range(10_000).withColumnRenamed("id", "row")
    first = [r.row for r in bounded_sample(df, "row", 1, 10_000, 500).collect()]
    again = [r.row for r in bounded_sample(df.repartition(7), "row", 1, 10_000, 500).collect()]
    other = {r.row for r in bounded_sample(df, "row", 2, 10_000, 500).collect()}
    assert len(first) == 500 and first == again
    assert len(other & set(first)) < 100  # about 500 * 500 / 10000 = 25 in common
    # A uniform sample of 0..9999: mean 5000, standard error 2887 / sqrt(500) = 129.
    assert abs(np.mean(first) - 5_000) < 4 * 129
    assert len(bounded_sample(df, "row", 1, 10_000, 50_000).collect()) == 10_000


def test_report_numbers_match_the_outputs(selection, table):
    out, manifest = selection
    report = out / "report"
    assert manifest["report"] == "report/index.html" and "report_seconds" in manifest["timings"]
    written = sorted(p.name for p in report.iterdir() if not p.name.startswith("."))  # not Hadoop's .crc
    assert written == sorted([*FIGURES, "index.html"])
    markup = (report / "index.html").read_text()
    page = _Page(markup)
    clusters = pq.read_table(out / "clusters").to_pandas().sort_values("cluster_id")
    subset = pq.read_table(out / "subset").to_pandas()
    assert page.by_id["n"] == "4,000" and page.by_id["k"] == "8" and page.by_id["m"] == "300"
    assert _number(page.by_id["subset-rows"]) == len(subset)
    assert _number(page.by_id["kmeans-cost"]) == pytest.approx(clusters["cost"].sum(), rel=1e-5)
    assert _number(page.by_id["kmeans-cost"]) == pytest.approx(manifest["kmeans_cost"], rel=1e-5)
    # The loss comparison, recomputed here from the files alone.
    true_mean = pc.mean(pq.read_table(table, columns=["loss"])["loss"]).as_py()
    estimate = (subset["weight"] * subset["loss"]).sum() / 4000
    ratio = (subset["weight"] * subset["loss"]).sum() / subset["weight"].sum()
    assert _number(page.by_id["loss-true"]) == pytest.approx(true_mean, rel=1e-5)
    assert _number(page.by_id["loss-estimate"]) == pytest.approx(estimate, rel=1e-5)
    assert _number(page.by_id["loss-ratio"]) == pytest.approx(ratio, rel=1e-5)
    assert _number(page.by_id["loss-error"]) == pytest.approx(100 * abs(estimate / true_mean - 1), abs=1e-3)
    # m = 300 draws: the estimate's relative standard error is a few percent (seed fixed).
    assert abs(estimate / true_mean - 1) < 0.1 and abs(ratio / true_mean - 1) < 0.1
    # Every row was shown (n and the subset are under the cap), selected ones found despite --drop-vector.
    text = " ".join(page.text)
    assert "4,000 of 4,000 rows" in text and f"{len(subset):,} of the {len(subset):,} selected rows" in text
    clusters_table = markup.split('<table id="clusters">')[1].split("</table>")[0]
    assert clusters_table.count("<tr><td>") == 8  # one row per cluster
    # Stratified weights sum to n_j in each cluster: the caption says the crosses lie on the line.
    assert manifest["strategy_used"] == "stratified" and "back to its share exactly" in text
    # Example rows: per cluster the selected rows nearest the center, with --report-col's value.
    examples = markup.split('<table id="examples">')[1].split("</table>")[0]
    for row in examples.split("<tr><td>")[1:]:
        cluster = int(row.split("</td>")[0])
        shown = row.split('<td class="examples">')[1].split("</td>")[0].split("<br>")
        nearest = subset[subset["cluster_id"] == cluster].sort_values(["cost", "id"]).head(3)
        assert shown == [f"{r.id}: {r.component}" for r in nearest.itertuples()]
    assert examples.count("<tr><td>") == 8


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian packages chromium and chromium-driver")
def test_chromium_shows_the_report(selection, tmp_path):
    from PIL import Image  # installed with matplotlib

    out, manifest = selection
    view = tmp_path / "view"
    shutil.copytree(out / "report", view)
    # A copy of the page with a probe that records, once loaded, what each image decoded to.
    probe = (
        "<script>window.addEventListener('load', () => { for (const img of document.images) "
        "img.dataset.natural = img.complete + ':' + img.naturalWidth + 'x' + img.naturalHeight; });</script>"
    )
    page_text = (view / "index.html").read_text()
    (view / "probe.html").write_text(page_text.replace("</body>", probe + "</body>"))
    dom = _Page(_chromium(tmp_path, "--dump-dom", (view / "probe.html").as_uri()).stdout)
    assert len(dom.images) == len(FIGURES)
    assert all(image.get("data-natural") == "true:800x500" for image in dom.images), dom.images
    shown = " ".join(dom.text)
    for label in ("k-means cost", "rows in the input (n)", "clusters (k)", "draws (m)", "true mean loss"):
        assert label in shown
    assert dom.by_id["kmeans-cost"] == f"{manifest['kmeans_cost']:,.6g}"
    assert dom.by_id["n"] == "4,000" and dom.by_id["m"] == "300" and dom.by_id["k"] == "8"
    assert dom.by_id["loss-error"].endswith("%")

    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,4200", (view / "index.html").as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (4200, 1000)
    assert (pixels.sum(axis=2) < 720).mean() > 0.03, "the screenshot is almost blank"
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((red > 180) & (green < 90) & (blue < 90)).sum() > 500, "no selected rows drawn (red)"
    assert ((blue > 150) & (red < 90)).sum() > 500, "no weights drawn (blue)"


def test_true_mean_loss_counts_valid_rows_and_rejects_missing_losses(spark):
    rows = [(i, [float(i), 1.0], float(i)) for i in range(10)]
    rows[3] = (3, None, None)  # invalid embeddings: left out of the mean, whatever their loss
    rows[4] = (4, [1.0], 1000.0)
    rows[5] = (5, [float("nan"), 1.0], 1000.0)
    schema = "id long, embedding array<double>, loss double"
    df = spark.createDataFrame(rows, schema)
    assert true_mean_loss(df, "id", "embedding", "loss", 2) == pytest.approx((0 + 1 + 2 + 6 + 7 + 8 + 9) / 7)

    rows[1], rows[7] = (1, [1.0, 1.0], None), (7, [7.0, 1.0], float("inf"))
    holes = spark.createDataFrame(rows, schema)
    with pytest.raises(
        ValueError, match=r"^loss column 'loss' has 2 null or non-finite values \(e.g. ids 1, 7\)"
    ):
        true_mean_loss(holes, "id", "embedding", "loss", 2)


def test_bad_loss_columns(spark, table, tmp_path):
    df = spark.read.parquet(str(table))
    with pytest.raises(ValueError, match=r"^loss column 'nope' is not in the input"):
        check_loss_column(df, "nope")
    with pytest.raises(
        ValueError, match=r"^loss column 'embedding' has type array<float>; expected a number$"
    ):
        check_loss_column(df, "embedding")
    config = SelectConfig(input=str(table), output=str(tmp_path / "x"), sample_size=5, loss_col="loss")
    with pytest.raises(ValueError, match=r"^--loss-col is used by the report only; add --report$"):
        run_select(spark, config)
    config = SelectConfig(
        input=str(table), output=str(tmp_path / "x"), sample_size=5, report=True, loss_col="component_name"
    )
    with pytest.raises(ValueError, match=r"^loss column 'component_name' is not in the input"):
        run_select(spark, config)
    assert not list(tmp_path.iterdir())
