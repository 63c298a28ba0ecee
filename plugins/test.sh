#!/usr/bin/env bash
# Native unit tests of the SDK and the plugins (rustup's toolchain, host
# target, plugins/target-native): the logic that needs no host. The wasm
# crates' .cargo/config.toml applies only inside their folders, so cargo runs
# from the repo root with --manifest-path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
for crate in sdk/rust plugins/rest-upload plugins/fixture plugins/native-copy; do
  echo "==> cargo test: $crate" >&2
  CARGO_TARGET_DIR="$here/target-native" cargo test -q -j "${CONSIGN_PLUGIN_JOBS:-2}" \
    --manifest-path "$crate/Cargo.toml"
done

# The native C ABI header must stay usable from C and C++.
if command -v cc >/dev/null; then
  echo "==> sdk/c/consign_plugin.h: C and C++ compile check" >&2
  out=$(mktemp -d)
  cc -std=c11 -Wall -Wextra -Werror -shared -fPIC -I sdk/c -o "$out/libminimal.so" sdk/c/example/minimal.c
  if command -v c++ >/dev/null; then
    c++ -x c++ -Wall -Wextra -Werror -fsyntax-only -I sdk/c sdk/c/example/minimal.c
  fi
  rm -rf "$out"
fi
echo "plugins/test.sh: ok" >&2
