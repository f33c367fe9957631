# The MLflow tracking server of the docker-compose stack: the official MLflow image plus the
# PostgreSQL driver (backend store) and boto3 (artifacts on MinIO/S3), which it does not ship.
# The tag must stay equal to the `mlflow==` pin of requirements.txt and the two pins below to
# theirs (tests/devstack/test_compose.py checks all three).
FROM ghcr.io/mlflow/mlflow:v3.17.2

RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.8
