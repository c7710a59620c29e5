# Podman as it runs on this kind of machine (see README, "Running on many
# machines"): as root, with runc and the cgroupfs manager (the sandbox has
# hybrid cgroups) and explicit low ulimits (it forbids raising them).
# Sourced by tools/image.sh and tools/cluster-containers.sh.

NORN_IMAGE=${NORN_IMAGE:-localhost/norn:dev}

# Installs podman and runc when missing (Debian's packages; needs root).
ensure_podman() {
  if command -v podman >/dev/null 2>&1 && [ -x /usr/sbin/runc ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "podman and runc are missing; run as root, or: sudo apt-get install -y podman runc" >&2
    return 1
  fi
  echo "installing podman and runc"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman runc >/dev/null
}

# podman with this machine's runtime flags.
pod() {
  podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs "$@"
}

# The ulimits every build and container gets.
ULIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
