"""The `spark` job kind: spark-submit of an application, watched like any child process.

spark-submit runs as a detached child process (process.py), so a timeout or cancel stops the
whole tree (spark-submit, the driver JVM, the Python driver) and the handle survives a
coordinator restart. Every application gets the same arguments (see coordinator/sparkjob.py):
`--partition`, one `--input DATASET=LOCATION` per input version, one `--output DATASET=LOCATION`
per output (from the `output` template), then the spec's own `args`.

Watching, by mode:
- local and client mode (and YARN/Kubernetes cluster mode, whose spark-submit waits for the
  application): the spark-submit process; its log is the driver log.
- standalone cluster mode (`spark://` master, deploy_mode cluster): spark-submit only submits;
  the driver is then watched, killed and re-attached through the master's REST API. A timeout
  or a cancel that meets spark-submit still running kills the driver it already handed over too.

The driver log is the run folder's `log` (RunResult.log_path); the application id goes into
RunResult.details["spark_app_id"] (reported by the job through the SDK, else read from the log);
a failed run's error is the log's real cause line (spark_log.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

from coordinator.errors import LaunchError
from coordinator.kinds.spark import PROJECT_ROOT, SparkSettings, check_cluster_mode, resolve_application
from coordinator.launchers import process
from coordinator.launchers.base import Handle, Launcher, RunContext, RunResult
from coordinator.launchers.command import run_env, substitute
from coordinator.launchers.result import read_results
from coordinator.launchers.spark_log import application_id, error_line, read_tail, submission_id
from coordinator.launchers.spark_master import StandaloneMaster, rest_url_for
from coordinator.sparkjob import RESULT_FILE_CONF

log = logging.getLogger("coordinator.launchers.spark")


def spark_submit_path(configured: str | None) -> str:
    """The configured spark-submit, else the one pyspark ships (found without importing pyspark)."""
    if configured:
        return configured
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise LaunchError("pyspark is not installed and COORD_SPARK_SUBMIT is not set")
    path = Path(spec.origin).parent / "bin" / "spark-submit"
    if not path.is_file():
        raise LaunchError(f"pyspark has no bin/spark-submit at {path}; set COORD_SPARK_SUBMIT")
    return str(path)


class SparkLauncher(Launcher):
    kind = "spark"
    settings_model = SparkSettings
    status_poll_s = 2.0  # how often the standalone master is asked in cluster mode
    status_patience_s = 300.0  # how long an unreachable master is waited for

    # ------------------------------------------------------------------ building the command
    def job_settings(self, ctx: RunContext) -> SparkSettings:
        return super().job_settings(ctx)

    def command(self, ctx: RunContext, js: SparkSettings) -> list[str]:
        master = js.master or self.settings.spark_master
        if js.deploy_mode == "cluster":
            try:
                check_cluster_mode(master, js.application)
            except ValueError as exc:
                raise LaunchError(f"{ctx.job}: {exc}") from exc
        argv = [
            spark_submit_path(self.settings.spark_submit),
            "--master",
            master,
            "--deploy-mode",
            js.deploy_mode,
            "--name",
            js.name or f"coord:{ctx.job}:{ctx.partition or '-'}",
        ]
        standalone_cluster = js.deploy_mode == "cluster" and master.startswith("spark://")
        conf = {
            **({"spark.master.rest.enabled": "true"} if standalone_cluster else {}),  # watched via REST
            **self.settings.spark_conf,
            **js.conf,
            RESULT_FILE_CONF: str(ctx.workdir / process.RESULT_NAME),
            "spark.coord.runId": ctx.run_id,
        }
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        if js.main_class:
            argv += ["--class", js.main_class]
        if js.driver_memory:
            argv += ["--driver-memory", js.driver_memory]
        if js.executor_memory:
            argv += ["--executor-memory", js.executor_memory]
        for flag, items in (("--py-files", js.py_files), ("--jars", js.jars)):
            if items:
                argv += [flag, ",".join(js.location(i) for i in items)]
        if js.packages:
            argv += ["--packages", ",".join(js.packages)]
        try:
            argv.append(resolve_application(js.application, js.folder()))
        except ValueError as exc:
            raise LaunchError(f"{ctx.job}: {exc}") from exc
        if ctx.partition is not None:
            argv += ["--partition", ctx.partition]
        for ref in ctx.inputs:
            if ref.location:
                argv += ["--input", f"{ref.dataset}={ref.location}"]
        for dataset in ctx.outputs:
            argv += ["--output", f"{dataset}={js.output_location(dataset, ctx.job, ctx.partition) or ''}"]
        argv += [substitute(a, ctx) for a in js.args]
        return argv

    def environment(self, ctx: RunContext) -> dict[str, str]:
        """The driver and executors use this interpreter, and can import the project's packages."""
        paths = (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))
        env = {
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        }
        if not self.settings.spark_submit:  # pyspark's own Spark, whatever SPARK_HOME says
            env["SPARK_HOME"] = str(Path(spark_submit_path(None)).parents[1])
        return {**run_env(ctx), **env, **ctx.env}

    # ------------------------------------------------------------------ the Launcher interface
    def start(self, ctx: RunContext) -> Handle:
        js = self.job_settings(ctx)
        argv = self.command(ctx, js)
        master = js.master or self.settings.spark_master
        handle = process.start_process(
            self.kind, argv, ctx.workdir, env=self.environment(ctx), cwd=js.folder()
        )
        rest = (js.rest_url or rest_url_for(master)) if js.deploy_mode == "cluster" else None
        return Handle(
            self.kind,
            {**handle.data, "started_at": time.time(), "deploy_mode": js.deploy_mode, "rest_url": rest},
        )

    def wait(self, handle: Handle, ctx: RunContext) -> RunResult:
        # The timeout counts from the launch, also for a run re-attached after a restart.
        started = float(handle.data.get("started_at") or time.time())
        deadline = None if ctx.timeout_s is None else started + ctx.timeout_s
        result = process.wait_process(handle, None if deadline is None else max(0.0, deadline - time.time()))
        if result.details.get("timed_out"):
            # spark-submit was stopped; in cluster mode a driver it already handed over goes too
            sid = self._kill_driver(handle)
            details = {**result.details, **({"submission_id": sid} if sid else {})}
            error = f"timed out after {ctx.timeout_s:g} s and was stopped"
            result = dataclasses.replace(result, error=error, details=details)
        elif handle.data.get("rest_url") and result.succeeded:
            result = self._wait_driver(handle, deadline, ctx)
        return process.masked(self._explain(handle, result), self.settings, ctx.settings, ctx.env)

    def cancel(self, handle: Handle) -> None:
        process.terminate(handle)
        self._kill_driver(handle)

    def _kill_driver(self, handle: Handle) -> str | None:
        """Standalone cluster mode: ask the master to kill the driver spark-submit handed over,
        if it did; returns its submission id. Never raises for a driver that already ended."""
        master, sid = self._master(handle)
        if master and sid:
            with contextlib.suppress(LaunchError):
                master.kill(sid)
        return sid

    def is_alive(self, handle: Handle) -> bool:
        """The process; in standalone cluster mode, the driver as the master reports it.

        A master that cannot be asked counts as alive: "unknown" must not mean "launch again";
        `wait` then follows the driver, and gives up only after `status_patience_s` of silence.
        """
        if process.is_alive(handle):
            return True
        master, sid = self._master(handle)
        if master is None or sid is None:
            return False
        try:
            return master.status(sid).running
        except LaunchError as exc:
            log.warning("cannot ask the spark master about %s (%s); treating it as running", sid, exc)
            return True

    # ------------------------------------------------------------------ helpers
    def _master(self, handle: Handle) -> tuple[StandaloneMaster | None, str | None]:
        rest = handle.data.get("rest_url")
        if not rest:
            return None, None
        log = Path(str(handle.data["workdir"])) / process.LOG_NAME
        return StandaloneMaster(str(rest)), submission_id(read_tail(log))

    def _wait_driver(self, handle: Handle, deadline: float | None, ctx: RunContext) -> RunResult:
        """Standalone cluster mode: spark-submit handed the driver over; follow it on the master."""
        workdir = Path(str(handle.data["workdir"]))
        log_path = str(workdir / process.LOG_NAME)
        master, sid = self._master(handle)
        if master is None or sid is None:
            return RunResult(False, error="spark-submit printed no submission id", log_path=log_path)
        silent_since: float | None = None
        while True:
            try:
                status = master.status(sid)
                silent_since = None
                if not status.running:
                    break
            except LaunchError:  # a master restarting or a network blip: keep asking a while
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > self.status_patience_s:
                    raise
            if deadline is not None and time.time() > deadline:
                with contextlib.suppress(LaunchError):
                    master.kill(sid)
                return RunResult(
                    False,
                    error=f"timed out after {ctx.timeout_s:g} s and was stopped",
                    log_path=log_path,
                    details={"timed_out": True, "submission_id": sid},
                )
            time.sleep(self.status_poll_s)
        outputs, details = read_results(workdir / process.RESULT_NAME)  # shared run folder, if any
        details = {
            **details,
            "submission_id": sid,
            "driver_state": status.state,
            **({"driver_worker": status.worker} if status.worker else {}),
        }
        if status.succeeded:
            return RunResult(True, outputs=outputs, log_path=log_path, details=details)
        why = f": {status.message}" if status.message else ""
        return RunResult(
            False,
            error=f"driver {sid} ended {status.state}{why}",
            outputs=outputs,
            log_path=log_path,
            details=details,
        )

    def _explain(self, handle: Handle, result: RunResult) -> RunResult:
        """Add the application id, and make a failure's error the driver log's real cause."""
        log_text = read_tail(Path(result.log_path)) if result.log_path else ""
        details = dict(result.details)
        app_id = details.get("spark_app_id") or application_id(log_text)
        outputs = result.outputs
        if app_id:
            details["spark_app_id"] = app_id
            # also on each output event, so the id is kept with the data it produced
            outputs = tuple(
                dataclasses.replace(o, attributes={**o.attributes, "spark_app_id": str(app_id)})
                for o in outputs
            )
        error = result.error
        if not result.succeeded and not details.get("timed_out") and "exit_code" in details:
            cause = error_line(log_text)
            if cause:
                code = details["exit_code"]
                error = f"{'exit code ' + str(code) if code is not None else 'killed'}: {cause}"
        return dataclasses.replace(result, details=details, error=error, outputs=outputs)
