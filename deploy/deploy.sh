#!/usr/bin/env bash
# `make deploy` / `make rollback`: put IMAGE (a name@sha256:digest reference) on DEPLOY_TARGET; for
# heroku-buildpack, the checked-out commit instead (Heroku builds it: bin/post_compile pulls the gated bundle).
#   deploy.sh deploy    records the image (or release) running now, deploys IMAGE, records the URL
#   deploy.sh rollback  puts back what `deploy` recorded
#   deploy.sh token     prints an identity token for the smoke test when the service is private (Cloud Run)
# State goes to DEPLOY_STATE (default .deploy/): previous, url. Settings are environment variables,
# listed per target in README "Set up CI/CD in your fork". Cloud Run and GKE pull from Artifact
# Registry, so IMAGE is copied there first (same image ID; deployed by its new digest).
set -euo pipefail

ACTION="${1:?usage: deploy.sh deploy|rollback|token}"
TARGET="${DEPLOY_TARGET:-none}"
STATE="${DEPLOY_STATE:-.deploy}"
NAME="${SERVICE_NAME:-mlops-template}"
mkdir -p "$STATE"

die() { echo "deploy: error: $*" >&2; exit 2; }
need() { for v in "$@"; do [ -n "${!v:-}" ] || die "$v is not set (DEPLOY_TARGET=$TARGET); see README 'Set up CI/CD in your fork'"; done; }
record_url() {
  echo "$1" > "$STATE/url"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then echo "url=$1" >> "$GITHUB_OUTPUT"; fi
  echo "deploy: $TARGET serves $1"
}
check_image() {
  need IMAGE
  [[ "$IMAGE" == *@sha256:* ]] || die "IMAGE must be pinned by digest (name@sha256:...), got $IMAGE"
}

# --- Artifact Registry copy (Cloud Run, GKE) ----------------------------------------------------
to_artifact_registry() {
  need GCP_PROJECT_ID GCP_REGION GAR_REPOSITORY
  local host="${GCP_REGION}-docker.pkg.dev"
  local repo="${host}/${GCP_PROJECT_ID}/${GAR_REPOSITORY}/${NAME}"
  local tag="${IMAGE%@*}"; tag="${tag##*/}" # name:tag@digest -> tag (or "deploy" when there is none)
  [[ "$tag" == *:* ]] && tag="${tag##*:}" || tag="deploy"
  gcloud auth configure-docker "$host" --quiet >&2
  docker pull "$IMAGE" >&2
  docker tag "$IMAGE" "${repo}:${tag}"
  docker push "${repo}:${tag}" >&2
  docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${repo}:${tag}" | grep "^${repo}@" | head -n1
}

# --- Heroku: container registry push + release through the Platform API -------------------------
heroku_api() { # method path [curl args: --data JSON, -H header]
  local method="$1" path="$2" variant=""; shift 2
  [ "$TARGET" = heroku ] && variant=".docker-releases" # the formation's docker_image needs this API variant
  curl --fail-with-body --silent --show-error -X "$method" "${HEROKU_API_URL:-https://api.heroku.com}/apps/${HEROKU_APP}${path}" \
    -H "Accept: application/vnd.heroku+json; version=3${variant}" \
    -H "Authorization: Bearer ${HEROKU_API_KEY}" -H "Content-Type: application/json" "$@"
}
heroku_record_previous() { # the release running now: what rollback goes back to (its slug or image, its config)
  heroku_api GET "/releases" -H "Range: version ..; order=desc, max=1" > "$STATE/releases.json" || true
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r[0]["id"] if r else "")' "$STATE/releases.json" \
    > "$STATE/previous" 2>/dev/null || : > "$STATE/previous"
}
heroku_url() { heroku_api GET "" | python3 -c 'import json,sys; print(json.load(sys.stdin)["web_url"].rstrip("/"))'; }
heroku_deploy() {
  need HEROKU_APP HEROKU_API_KEY
  heroku_record_previous
  local registry="registry.heroku.com/${HEROKU_APP}/web"
  echo "$HEROKU_API_KEY" | docker login registry.heroku.com --username=_ --password-stdin
  docker pull "$IMAGE"
  docker tag "$IMAGE" "$registry"
  docker push "$registry"
  local image_id
  image_id="$(docker inspect --format '{{.Id}}' "$registry")"
  heroku_api PATCH "/formation" --data "{\"updates\":[{\"type\":\"web\",\"docker_image\":\"${image_id}\"}]}" > /dev/null
  record_url "$(heroku_url)"
}
heroku_rollback() {
  need HEROKU_APP HEROKU_API_KEY
  local previous; previous="$(cat "$STATE/previous" 2>/dev/null || true)"
  [ -n "$previous" ] || { echo "deploy: no previous Heroku release recorded; nothing to roll back"; return 0; }
  heroku_api POST "/releases" --data "{\"release\":\"${previous}\"}" > /dev/null
  echo "deploy: heroku rolled back to release $previous"
}

# --- Heroku buildpack: git push of the commit CI built; Heroku builds the slug, rollback as above ---------
# The push returns once Heroku built and released the commit, and fails when the build did (bin/post_compile
# refuses a bundle that is missing, REJECTED or corrupt), so a bad bundle never reaches a dyno.
heroku_buildpack_deploy() {
  need HEROKU_APP HEROKU_API_KEY
  local commit remote
  commit="$(git rev-parse --verify "${DEPLOY_COMMIT:-HEAD}^{commit}")" || die "no commit ${DEPLOY_COMMIT:-HEAD} here"
  [ "$(git rev-parse --is-shallow-repository)" = false ] \
    || die "this clone is shallow and Heroku's git refuses shallow pushes; check out with fetch-depth: 0"
  heroku_record_previous
  remote="${HEROKU_GIT_URL:-https://git.heroku.com/${HEROKU_APP}.git}" # HEROKU_GIT_URL: tests' loopback stand-in
  echo "deploy: pushing $commit to $remote (Heroku builds it; the build log follows)"
  # the key travels as a header set through the environment: never in the URL, the process list or .git/config
  GIT_TERMINAL_PROMPT=0 GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader \
    GIT_CONFIG_VALUE_0="Authorization: Basic $(printf '%s' "heroku:${HEROKU_API_KEY}" | base64 -w0)" \
    git push --force "$remote" "${commit}:refs/heads/main"
  record_url "$(heroku_url)"
}
heroku_buildpack_rollback() { heroku_rollback; }

# --- Cloud Run --------------------------------------------------------------------------------
cloudrun_args() { echo --region "$GCP_REGION" --project "$GCP_PROJECT_ID" --quiet; }
cloudrun_deploy() {
  need CLOUD_RUN_SERVICE GCP_REGION GCP_PROJECT_ID
  # shellcheck disable=SC2046
  gcloud run services describe "$CLOUD_RUN_SERVICE" $(cloudrun_args) \
    --format 'value(spec.template.spec.containers[0].image)' > "$STATE/previous" 2>/dev/null || : > "$STATE/previous"
  local image; image="$(to_artifact_registry)"
  [ -n "$image" ] || die "could not read the Artifact Registry digest of $IMAGE"
  # shellcheck disable=SC2046
  gcloud run deploy "$CLOUD_RUN_SERVICE" --image "$image" --port 8000 ${CLOUD_RUN_FLAGS:---allow-unauthenticated} $(cloudrun_args)
  # shellcheck disable=SC2046
  record_url "$(gcloud run services describe "$CLOUD_RUN_SERVICE" $(cloudrun_args) --format 'value(status.url)')"
}
cloudrun_rollback() {
  need CLOUD_RUN_SERVICE GCP_REGION GCP_PROJECT_ID
  local previous; previous="$(cat "$STATE/previous" 2>/dev/null || true)"
  [ -n "$previous" ] || { echo "deploy: no previous Cloud Run image recorded; nothing to roll back"; return 0; }
  # shellcheck disable=SC2046
  gcloud run deploy "$CLOUD_RUN_SERVICE" --image "$previous" --port 8000 ${CLOUD_RUN_FLAGS:---allow-unauthenticated} $(cloudrun_args)
  echo "deploy: cloudrun rolled back to $previous"
}

# --- GKE (kubectl context from google-github-actions/get-gke-credentials) -----------------------
K8S_NS="${K8S_NAMESPACE:-default}"
gke_deploy() {
  kubectl get deployment "$NAME" -n "$K8S_NS" -o jsonpath='{.spec.template.spec.containers[0].image}' \
    > "$STATE/previous" 2>/dev/null || : > "$STATE/previous"
  local image; image="$(to_artifact_registry)"
  [ -n "$image" ] || die "could not read the Artifact Registry digest of $IMAGE"
  rm -rf "$STATE/k8s" && cp -R deploy/k8s "$STATE/k8s" # the tracked manifests stay untouched
  (cd "$STATE/k8s" && kustomize edit set image "mlops-template=${image}")
  kubectl apply -k "$STATE/k8s" -n "$K8S_NS"
  kubectl rollout status "deployment/$NAME" -n "$K8S_NS" --timeout="${ROLLOUT_TIMEOUT:-300s}"
  # behind an Ingress (a ClusterIP service) there is no load-balancer address: SERVICE_URL says where it answers
  if [ -n "${SERVICE_URL:-}" ]; then record_url "${SERVICE_URL%/}"; return; fi
  local ip=""
  for _ in $(seq 1 "${LB_WAIT_TRIES:-60}"); do
    ip="$(kubectl get service "$NAME" -n "$K8S_NS" -o jsonpath='{.status.loadBalancer.ingress[0].ip}')"
    [ -n "$ip" ] && break
    sleep "${LB_WAIT_SECONDS:-5}"
  done
  [ -n "$ip" ] || die "service/$NAME has no load-balancer address yet; set SERVICE_URL"
  record_url "http://${ip}"
}
gke_rollback() {
  local previous; previous="$(cat "$STATE/previous" 2>/dev/null || true)"
  [ -n "$previous" ] || { echo "deploy: no previous GKE image recorded; nothing to roll back"; return 0; }
  kubectl set image "deployment/$NAME" "model-server=${previous}" -n "$K8S_NS"
  kubectl rollout status "deployment/$NAME" -n "$K8S_NS" --timeout="${ROLLOUT_TIMEOUT:-300s}"
  echo "deploy: gke rolled back to $previous"
}

# `token`: an identity token for the smoke test of a private Cloud Run service (CLOUD_RUN_FLAGS has
# --no-allow-unauthenticated); prints nothing otherwise.
if [ "$ACTION" = token ]; then
  if [ "$TARGET" = cloudrun ] && [[ "${CLOUD_RUN_FLAGS:-}" == *--no-allow-unauthenticated* ]]; then
    gcloud auth print-identity-token --audiences="$(cat "$STATE/url")"
  fi
  exit 0
fi
case "$TARGET" in
  none) echo "deploy: DEPLOY_TARGET=none; nothing to $ACTION"; exit 0 ;;
  heroku | heroku-buildpack | cloudrun | gke) ;;
  *) die "DEPLOY_TARGET must be heroku, heroku-buildpack, cloudrun, gke or none, got '$TARGET'" ;;
esac
case "$ACTION" in
  deploy) [ "$TARGET" = heroku-buildpack ] || check_image; "${TARGET//-/_}_deploy" ;;
  rollback) "${TARGET//-/_}_rollback" ;;
  *) die "unknown action '$ACTION' (deploy, rollback or token)" ;;
esac
