#!/bin/sh
# One-shot `minio-init` service (minio/mc image): create the buckets of the stack and upload the
# dataset folder mounted at /dataset (TinySOL layout + TinySOL_metadata.csv) under
# s3://$INSTROPITCH_BUCKET/$INSTROPITCH_PREFIX, where instropitch_etl reads it by default.
#
# Runs at every `docker compose up`; `mc mirror` skips objects already uploaded, so an unchanged
# dataset costs nothing, and MinIO's ETag (the MD5 of a single-part upload) stays the same, so
# the ETL skips those objects too. The Airflow worker starts only after this succeeded.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${INSTROPITCH_BUCKET:?}" "${INSTROPITCH_PREFIX:?}" "${MLFLOW_BUCKET:?}"
endpoint="${MINIO_ENDPOINT:-http://minio:9000}"
dataset=/dataset

mc alias set local "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$INSTROPITCH_BUCKET"
mc mb --ignore-existing "local/$MLFLOW_BUCKET"

if [ ! -f "$dataset/TinySOL_metadata.csv" ]; then
    echo "minio-init: no TinySOL_metadata.csv in the folder INSTROPITCH_DATASET_DIR points at." >&2
    echo "minio-init: render the synthetic set with 'make demo' (or 'instropitch synth --out DIR')," >&2
    echo "minio-init: or set INSTROPITCH_DATASET_DIR to the folder 'instropitch dataset download' printed." >&2
    exit 1
fi

target="local/$INSTROPITCH_BUCKET/${INSTROPITCH_PREFIX%/}/"
echo "minio-init: mirroring $dataset to $target"
mc mirror --overwrite --quiet "$dataset" "$target"
mc ls --recursive --summarize "$target" | tail -n 2
echo "minio-init: done"
