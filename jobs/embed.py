"""spark-submit entry point: embed every row of a table and write id + embedding.

    spark-submit jobs/embed.py --input PATH --id-col id --text-col text \
        --embedder sentence-transformers --output EMB
"""

import sys

from spark_sensitivity.cli.embed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
