"""spark-submit entry point: select a weighted subset of a table of embeddings.

    spark-submit jobs/select_subset.py --input PATH --id-col id --vector-col embedding \
        --k 1000 --sample-size 100000 --seed 7 --output OUT
"""

import sys

from spark_sensitivity.cli import main

if __name__ == "__main__":
    sys.exit(main(["select", *sys.argv[1:]]))
