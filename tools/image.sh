#!/usr/bin/env bash
# `make image`: builds nornd and norn (release; PROFILE=debug takes the
# debug binaries as built, for tests), assembles the runtime root file
# system (tools/image-rootfs.sh) and builds the image NORN_IMAGE
# (localhost/norn:dev) from deploy/container/Containerfile.prebuilt with
# podman, installing podman when missing. Prints the image's size.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=tools/container-lib.sh
source tools/container-lib.sh
ensure_podman

PROFILE=${PROFILE:-release}
case "$PROFILE" in
  release) cargo build --release --locked --quiet -p norn-node -p norn-cli --bins ;;
  debug) ;;
  *) echo "PROFILE must be release or debug" >&2; exit 2 ;;
esac
context=target/image-$PROFILE
tools/image-rootfs.sh "target/$PROFILE" "$context"
pod build "${ULIMITS[@]}" -q -f deploy/container/Containerfile.prebuilt -t "$NORN_IMAGE" "$context" >/dev/null
size=$(pod image inspect --format '{{.Size}}' "$NORN_IMAGE")
echo "image $NORN_IMAGE: $(( size / 1024 / 1024 )) MiB ($size bytes)"
