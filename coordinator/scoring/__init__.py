"""Scoring a table with a registered MLflow model: the engine behind the `score` job kind.

resolve.py    models:/NAME@ALIAS (or a version) → the exact version, once, at run start
signature.py  the input table's Arrow schema against the model's input signature
model.py      load the model once; call the scikit-learn estimator directly when the flavor allows
inprocess.py  Parquet in, Arrow record batches through the model, Parquet scores out
spark.py      the same on a SparkSession with mlflow.pyfunc.spark_udf
output.py     the scores table's layout (keys, predictions, model name/version, scored_at)
run.py        `python -m coordinator.scoring.run`, the child process the launcher starts
registry.py   the model registry as an input: alias moves become completion events
"""
