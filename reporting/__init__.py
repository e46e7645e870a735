"""Pure reporting: ledger movements → periods, rates, summary, projection, cohorts."""
