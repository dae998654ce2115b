#!/usr/bin/env bash
# Save the mapping and settings of INDEX (or of the index behind an alias), `_meta` encoder record included, as
# JSON under DIR (default: mapping-backups/), so a version can be recreated or compared later.
#   usage: scripts/backup-mapping.sh INDEX [DIR]
# Uses curl with the same variables as splade-os: OPENSEARCH_URL (first URL), OPENSEARCH_USERNAME and
# OPENSEARCH_PASSWORD, OPENSEARCH_CA_CERTS, or their ELASTICSEARCH_* forms when those are unset. The password goes to
# curl on stdin, never on its command line.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 INDEX [DIR]" >&2
  exit 2
fi
index=$1 dir=${2:-mapping-backups}
[ "$dir" = / ] || dir=${dir%/}  # DIR/ as typed (tab completion adds the slash): saved under DIR/, not DIR//
url=${OPENSEARCH_URL:-${ELASTICSEARCH_URL:-http://127.0.0.1:9200}}
user=${OPENSEARCH_USERNAME:-${ELASTICSEARCH_USERNAME:-}}
password=${OPENSEARCH_PASSWORD:-${ELASTICSEARCH_PASSWORD:-}}
ca=${OPENSEARCH_CA_CERTS:-${ELASTICSEARCH_CA_CERTS:-}}
url=${url%%,*}
url=${url%/}
mkdir -p "$dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
fetch() {
  local path=$1 out=$2
  {
    if [ -n "$user" ]; then printf 'user = "%s:%s"\n' "$user" "$password"; fi
    if [ -n "$ca" ]; then printf 'cacert = "%s"\n' "$ca"; fi
  } | curl --fail --silent --show-error --config - "$url/$index/$path" -o "$out"
}
fetch _mapping "$dir/$index.$stamp.mapping.json"
fetch _settings "$dir/$index.$stamp.settings.json"
echo "saved $dir/$index.$stamp.mapping.json and $dir/$index.$stamp.settings.json"
