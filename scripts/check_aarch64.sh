#!/usr/bin/env bash
# Builds, lints and tests the workspace for aarch64 (64-bit Arm) on an x86-64 Debian machine:
# the engine's portable kernels are what such a CPU runs (the AVX2 ones are compiled only for
# x86-64), and this runs the whole test suite on them under user-mode emulation (qemu).
# Not part of CI (`.ci/run`): it needs root for apt and binfmt, and the emulated tests take a
# few minutes. Usage: scripts/check_aarch64.sh [--no-test]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu

# The Rust standard library for the target, a cross C compiler (a build script of a
# dependency compiles C) and qemu, with binfmt so that tests which spawn the `cnn` binary
# can run it too.
rustup target add "$TARGET"
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    apt-get install -y -q gcc-aarch64-linux-gnu qemu-user qemu-user-binfmt
fi
if [ -d /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] \
        || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-aarch64}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $QEMU_LD_PREFIX"

cargo clippy --workspace --all-targets --target "$TARGET" -- -D warnings
if [ "${1:-}" != "--no-test" ]; then
    cargo test --workspace --release --target "$TARGET"
fi
