"""Choosing the real cause line of a failed Spark driver log, and reading ids from it (pure)."""

from __future__ import annotations

from pathlib import Path

from coordinator.launchers import process
from coordinator.launchers.spark_log import application_id, error_line, submission_id

SHUTDOWN = """26/03/10 11:50:07 INFO SparkContext: Invoking stop() from shutdown hook
26/03/10 11:50:07 INFO SparkContext: SparkContext is stopping with exitCode 0 from run at Executors.java:539.
26/03/10 11:50:07 INFO MemoryStore: MemoryStore cleared
26/03/10 11:50:07 INFO ShutdownHookManager: Shutdown hook called
26/03/10 11:50:07 INFO ShutdownHookManager: Deleting directory /tmp/spark-d6acdee0/pyspark-4a8e3b0e
"""

ANALYSIS = """26/03/10 11:50:06 WARN FileStreamSink: Assume no metadata directory. \
Error while looking for metadata directory in the path: /data/raw/users/date=2026-01-09.
java.io.FileNotFoundException: File /data/raw/users/date=2026-01-09 does not exist
\tat org.apache.hadoop.fs.RawLocalFileSystem.deprecatedGetFileStatus(RawLocalFileSystem.java:980)
Traceback (most recent call last):
  File "/app/jobs/user_features.py", line 100, in <module>
    main()
  File "/app/jobs/user_features.py", line 89, in main
    users = spark.read.format(opts.format).load(args.input("users"))
            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/venv/pyspark/python/lib/pyspark.zip/pyspark/errors/exceptions/captured.py", line 288, in deco
pyspark.errors.exceptions.captured.AnalysisException: [PATH_NOT_FOUND] Path does not exist: \
file:/data/raw/users/date=2026-01-09. SQLSTATE: 42K03
""" + SHUTDOWN

PY4J = """Traceback (most recent call last):
  File "/app/job.py", line 12, in <module>
    df.write.parquet(out)
  File "/venv/py4j/protocol.py", line 327, in get_return_value
    raise Py4JJavaError(
py4j.protocol.Py4JJavaError: An error occurred while calling o52.parquet.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 1.0 failed 1 times
\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2856)
\tat java.base/java.lang.Thread.run(Thread.java:840)
Caused by: org.apache.hadoop.fs.FileAlreadyExistsException: /warehouse/x/part-0 already exists
\tat org.apache.hadoop.fs.RawLocalFileSystem.create(RawLocalFileSystem.java:421)
Caused by: java.io.IOException: No space left on device
\tat java.base/java.io.FileOutputStream.writeBytes(Native Method)
\t... 18 more

""" + SHUTDOWN

WORKER = """26/03/10 11:50:06 ERROR Executor: Exception in task 0.0 in stage 2.0 (TID 2)
org.apache.spark.api.python.PythonException: Traceback (most recent call last):
  File "/app/job.py", line 7, in parse
ValueError: bad amount 'x'
Traceback (most recent call last):
  File "/app/job.py", line 20, in <module>
    df.collect()
  File "/venv/pyspark/errors/exceptions/captured.py", line 288, in deco
    raise converted from None
pyspark.errors.exceptions.captured.PythonException:
  An exception was thrown from the Python worker. Please see the stack trace below.
Traceback (most recent call last):
  File "/app/job.py", line 7, in parse
    raise ValueError(f"bad amount {v!r}")
ValueError: bad amount 'x'
""" + SHUTDOWN

JVM_DIED = """26/03/10 11:50:01 ERROR Executor: Exception in task 3.0 in stage 4.0 (TID 9)
java.lang.OutOfMemoryError: Java heap space
\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)
Traceback (most recent call last):
  File "/app/job.py", line 20, in <module>
    df.count()
py4j.protocol.Py4JNetworkError: Answer from Java side is empty
""" + SHUTDOWN

ARGPARSE = """usage: user_features.py [-h] [--partition PARTITION] [--lookback-days LOOKBACK_DAYS]
user_features.py: error: argument --lookback-days: invalid int value: 'x'
""" + SHUTDOWN


def test_python_exception_not_the_shutdown_noise() -> None:
    line = error_line(ANALYSIS)
    assert line.startswith("pyspark.errors.exceptions.captured.AnalysisException: [PATH_NOT_FOUND]")
    assert "date=2026-01-09" in line


def test_py4j_error_gives_the_deepest_java_cause() -> None:
    assert error_line(PY4J) == "java.io.IOException: No space left on device"


def test_python_worker_exception_inside_a_python_exception() -> None:
    assert error_line(WORKER) == "ValueError: bad amount 'x'"


def test_dead_jvm_points_at_the_out_of_memory_error() -> None:
    assert error_line(JVM_DIED) == "java.lang.OutOfMemoryError: Java heap space"


def test_argument_errors_and_log4j_errors() -> None:
    assert error_line(ARGPARSE) == "user_features.py: error: argument --lookback-days: invalid int value: 'x'"
    log4j = "26/03/10 11:50:01 ERROR SparkContext: Error initializing SparkContext.\n" + SHUTDOWN
    assert error_line(log4j) == "SparkContext: Error initializing SparkContext."
    assert error_line(SHUTDOWN) is None


def test_generic_rule_picks_the_py4j_line_where_these_rules_do_not(tmp_path: Path) -> None:
    (tmp_path / "log").write_text(JVM_DIED)
    assert "Py4JNetworkError" in process.last_error_line(tmp_path / "log")
    assert "OutOfMemoryError" in error_line(JVM_DIED)


def test_application_and_submission_ids() -> None:
    assert application_id("INFO Utils: id local-1795607367274 here") == "local-1795607367274"
    assert application_id("Connected to Spark cluster with app ID app-20260310115001-0003") == \
        "app-20260310115001-0003"
    assert application_id("Submitted application application_1700000000000_0042") == \
        "application_1700000000000_0042"
    assert application_id(SHUTDOWN) is None
    text = ('INFO RestSubmissionClient: Submission successfully created as driver-20260310115001-0007. '
            'Polling submission state...\n"submissionId" : "driver-20260310115001-0007",')
    assert submission_id(text) == "driver-20260310115001-0007"
    assert submission_id(SHUTDOWN) is None
