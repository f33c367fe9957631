#!/bin/sh
# One-shot `minio-init` service (minio/mc image): create the buckets of the stack and upload the
# dataset folder mounted at /dataset: a TinySOL-layout folder (+ TinySOL_metadata.csv) under
# s3://$INSTROPITCH_BUCKET/$INSTROPITCH_PREFIX, where instropitch_etl reads by default, or a folder of
# such folders, each under its own name.
#
# Runs at every `docker compose up`; `mc mirror` skips objects already uploaded, so an unchanged
# dataset costs nothing, and MinIO's ETag (the MD5 of a single-part upload) stays the same, so
# the ETL skips those objects too. The Airflow worker starts only after this succeeded.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${INSTROPITCH_BUCKET:?}" "${INSTROPITCH_PREFIX:?}" "${MLFLOW_BUCKET:?}"
endpoint="${MINIO_ENDPOINT:-http://minio:9000}"
dataset="${MINIO_INIT_DATASET:-/dataset}"  # the mount; a test points it elsewhere

mc alias set local "$endpoint" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$INSTROPITCH_BUCKET"
mc mb --ignore-existing "local/$MLFLOW_BUCKET"

# A TinySOL-layout folder is uploaded under $INSTROPITCH_PREFIX (source TinySOL); a folder of such
# folders (what `make demo` renders: one per SoundFont) uploads each under its own name NAME/.
mirror() {
    target="local/$INSTROPITCH_BUCKET/${2%/}/"
    echo "minio-init: mirroring $1 to $target"
    mc mirror --overwrite --quiet "$1" "$target"
    mc ls --recursive --summarize "$target" | tail -n 2
}

if [ -f "$dataset/TinySOL_metadata.csv" ]; then
    mirror "$dataset" "$INSTROPITCH_PREFIX"
    echo "minio-init: done; instropitch_etl sources: [\"$INSTROPITCH_PREFIX\"] (its default)"
    exit 0
fi
sources=""
for folder in "$dataset"/*/; do
    [ -f "${folder}TinySOL_metadata.csv" ] || continue
    name=$(basename "$folder")
    mirror "$folder" "$name/"
    sources="$sources${sources:+, }\"$name/\""
done
if [ -z "$sources" ]; then
    echo "minio-init: no TinySOL_metadata.csv in the folder INSTROPITCH_DATASET_DIR points at, nor in its subfolders." >&2
    echo "minio-init: render the synthetic set with 'make demo' (or 'instropitch demo --no-training')," >&2
    echo "minio-init: or set INSTROPITCH_DATASET_DIR to the folder 'instropitch dataset download' printed." >&2
    exit 1
fi
echo "minio-init: done; trigger instropitch_etl with -c '{\"sources\": [$sources]}'"
