# The Airflow image of the docker-compose stack: the official Airflow image plus the exact pins
# of the runtime set (requirements/runtime.txt: no test tools, no embedded services) and the
# `instropitch` package.
#
# The tag below must stay equal to the `apache-airflow==` pin of the locks
# (tests/devstack/test_compose.py checks it), so installing them keeps Airflow as it is.
# The locks are universal: TensorFlow is `tensorflow-cpu` on x86_64 and `tensorflow` elsewhere
# (tensorflow-cpu has no aarch64 wheels), so the image builds natively on amd64 and arm64.
FROM apache/airflow:3.3.2-python3.11

# Pinned dependencies first: this layer is rebuilt only when the runtime lock changes.
# `apache-airflow==${AIRFLOW_VERSION}` next to the requirements is what the Airflow docs
# recommend so that pip can never move the Airflow of the image.
COPY --chown=airflow:0 requirements/runtime.txt /opt/airflow/project/requirements/runtime.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/project/requirements/runtime.txt

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
