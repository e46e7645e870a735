"""The app's collaborators: the `Runtime` of `pipeline.runtime.bootstrap`, kept in
`app.extensions`, and the web process's group commit of webhook deliveries.

Nothing here connects at build time: the engine and the Redis client open their first
connection on first use, in the process that serves requests.
"""

from __future__ import annotations

from flask import Flask, current_app

from pipeline.intake import GroupCommit
from pipeline.runtime import Runtime

RUNTIME = "mrr.runtime"
INTAKE = "mrr.intake"


def register(app: Flask, runtime: Runtime) -> None:
    app.extensions[RUNTIME] = runtime
    app.extensions[INTAKE] = GroupCommit.of(runtime)


def runtime() -> Runtime:
    return current_app.extensions[RUNTIME]  # type: ignore[no-any-return]


def group_commit() -> GroupCommit:
    return current_app.extensions[INTAKE]  # type: ignore[no-any-return]
