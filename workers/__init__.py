"""RQ glue: the worker runtime (no fork), the job entry point, and the sweeper thread.

Every job calls into `pipeline/`; nothing here imports Flask or the CLI.
"""
