#!/usr/bin/env bash
# Build every first-party plugin from source and put each artefact next to its
# plugin.toml (overwriting the committed .wasm files).
#
#   plugins/build.sh                 # WASM (Rust + C) and native plugins
#   plugins/build.sh --native-only   # only the native plugin (no wasm toolchain needed),
#                                    # written into plugins/native-copy/ (and wrong-abi/)
#
# Needs plugins/toolchain.sh first for the WASM plugins. Target dirs:
#   plugins/target-wasm    every Rust guest crate (std is built once, -Zbuild-std)
#   plugins/target-c       the C guest's objects
#   plugins/target-native  the native plugin (rustup's cargo, host target)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
native_only=false
for arg in "$@"; do
  case "$arg" in
    --native-only) native_only=true ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

jobs=${CONSIGN_PLUGIN_JOBS:-2}
built=()   # "path" of each artefact, for the summary

step() { echo "==> $*" >&2; }

# A Rust guest crate -> component. Its .cargo/config.toml selects Debian's
# rustc, the wasm32 target, build-std and wasm-component-ld.
build_wasm_crate() { # dir artefact-name dest [cargo args...]
  local dir=$1 name=$2 dest=$3; shift 3
  step "wasm: $dir $*"
  ( cd "$here/$dir" &&
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$here/target-wasm" \
      cargo build --release --locked -j "$jobs" "$@" )
  mkdir -p "$(dirname "$here/$dest")"
  cp "$here/target-wasm/wasm32-unknown-unknown/release/$name" "$here/$dest"
  built+=("$dest")
}

if ! $native_only; then
  for tool in /usr/bin/rustc /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld clang-14 /usr/bin/wasm-ld-22; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool missing: run plugins/toolchain.sh (as root) first" >&2; exit 1; }
  done
  build_wasm_crate rest-upload rest_upload.wasm rest-upload/rest_upload.wasm
  build_wasm_crate fixture fixture.wasm fixture/v2/fixture.wasm --features v2
  build_wasm_crate fixture fixture.wasm fixture/fixture.wasm

  # The vendor template, exactly as the SDK README's quick start uses it:
  # copied out, SDK path pointed at sdk/rust, built (nothing is kept).
  step "wasm: sdk/rust/template (compile check of the quick start)"
  tpl="$here/target-wasm/template-check"
  rm -rf "$tpl" && mkdir -p "$tpl" && cp -r "$here/../sdk/rust/template/." "$tpl/"
  sed -i "s|path = \"..\"|path = \"$here/../sdk/rust\"|" "$tpl/Cargo.toml"
  ( cd "$tpl" && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$here/target-wasm" cargo build --release -q -j "$jobs" )

  step "wasm (C): c-sink"
  make -s -B -C "$here/c-sink" BUILD="$here/target-c/c-sink" c_sink.wasm
  built+=("c-sink/c_sink.wasm")
fi

build_native() { # dest [cargo args...]
  local dest=$1; shift
  step "native: native-copy $*"
  ( cd "$here/native-copy" &&
    CARGO_TARGET_DIR="$here/target-native" cargo build --release --locked -j "$jobs" "$@" )
  mkdir -p "$(dirname "$here/$dest")"
  cp "$here/target-native/release/libconsign_native_copy.so" "$here/$dest"
  built+=("$dest")
}
build_native native-copy/wrong-abi/libconsign_native_copy.so --features wrong-abi
build_native native-copy/libconsign_native_copy.so

echo "built (relative to plugins/):"
for f in "${built[@]}"; do
  printf '  %-48s %9s bytes  sha256 %s\n' "$f" "$(stat -c %s "$here/$f")" "$(sha256sum "$here/$f" | cut -d' ' -f1)"
done
