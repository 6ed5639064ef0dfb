"""The jobs as library functions: select, loss-aware rounds, refresh, dedup, embed, evaluate,
the dry-run plan, the HTML report and the demo. Each reads its inputs, runs the core steps and
publishes one output folder atomically."""
