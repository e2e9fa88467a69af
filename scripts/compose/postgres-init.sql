-- Extra databases of the compose stack: MLflow's backend and the product database.
CREATE DATABASE mlflow OWNER coord;
CREATE DATABASE product OWNER coord;
