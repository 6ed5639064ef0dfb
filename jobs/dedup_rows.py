"""spark-submit entry point: remove near-duplicate rows of a table of embeddings.

    spark-submit jobs/dedup_rows.py --input PATH --id-col id --vector-col embedding \
        --k 1000 --dedup-eps 0.05 --output OUT
"""

import sys

from spark_sensitivity.cli import main

if __name__ == "__main__":
    sys.exit(main(["dedup", *sys.argv[1:]]))
