"""Flask edge: webhook intake, ops and report endpoints, dashboard, and the `mrr` CLI."""
