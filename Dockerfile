# The Airflow image of the docker-compose stack: the official Airflow image plus the exact pins
# of requirements.txt and the `instropitch` package.
#
# The tag below must stay equal to the `apache-airflow==` pin in requirements.txt
# (tests/devstack/test_compose.py checks it), so installing requirements.txt keeps Airflow as it is.
# requirements.txt is compiled for x86_64 (tensorflow-cpu has no aarch64 wheels): the compose
# file builds and runs this image as linux/amd64.
FROM apache/airflow:3.3.2-python3.11

# Pinned dependencies first: this layer is rebuilt only when requirements.txt changes.
# `apache-airflow==${AIRFLOW_VERSION}` next to the requirements is what the Airflow docs
# recommend so that pip can never move the Airflow of the image.
COPY --chown=airflow:0 requirements.txt /opt/airflow/project/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/project/requirements.txt

# The package, editable, from /opt/airflow/project/include: the compose file mounts ./include
# and ./models over these copies, so a code change needs a restart, not a rebuild. The SQL
# ships inside the package (instropitch/data/sql/); the recipes people edit are found
# through INSTROPITCH_MODELS_DIR (also set in the compose file).
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/project/
COPY --chown=airflow:0 include /opt/airflow/project/include
COPY --chown=airflow:0 models /opt/airflow/project/models
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/airflow/project

# DAGs and the plugin are mounted by the compose file; copies in the image make it usable alone.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins

ENV INSTROPITCH_MODELS_DIR=/opt/airflow/project/models
