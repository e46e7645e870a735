"""RQ side: queue factory, the apply-one-event job, the sweeper. Never imports Flask."""
