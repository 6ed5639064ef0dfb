"""The scripts behind the figures in docs/: run from the repository root as modules.

    python -m benchmarks.experiments.<name> --help    # quality: accuracy, error, coverage of the method
    python -m benchmarks.performance.<name> --help    # speed and memory
    python -m benchmarks.integration.same_outputs --help   # the same outputs before and after a refactor

Shared helpers of the experiments are in :mod:`benchmarks.common`. Nothing here is installed with the
package (setup.py packages spark_sensitivity only); the ``bench`` extra brings what the scripts need.
"""
