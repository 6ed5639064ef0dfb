"""spark-submit entry point: how well a selection scheme estimates the mean of a per-row loss.

    spark-submit jobs/evaluate.py --input TABLE --loss-col loss --scheme model-free \
        --scheme loss-aware --sample-sizes 100,1000 --seeds 100 --k 100 --output OUT
"""

import sys

from spark_sensitivity.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
