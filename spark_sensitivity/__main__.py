import sys

from spark_sensitivity.cli import main

sys.exit(main())
