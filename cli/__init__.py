"""The `mrr` console script (SPEC §5): thin click commands over `pipeline/`."""
