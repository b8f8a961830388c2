#!/bin/bash -eu
# Builds every target of fuzz/ for ClusterFuzzLite / OSS-Fuzz and puts next to each binary its
# seed corpus (<target>_seed_corpus.zip) and dictionary (<target>.dict).
#
# The OSS-Fuzz image ships a nightly toolchain; RUSTC_BOOTSTRAP=1 lets the same build run on a
# stable one too, as this project does locally (fuzz/README.md).
cd "$SRC/gatecheck/fuzz"
export RUSTC_BOOTSTRAP=1
# Optimised, with debug assertions and overflow checks on: the codec's own debug-build
# cross-checks then run under the fuzzer as well as the targets' explicit comparisons.
cargo fuzz build -O --debug-assertions
targets=$(cargo fuzz list)
out_dir=target/x86_64-unknown-linux-gnu/release
for target in $targets; do
  cp "$out_dir/$target" "$OUT/"
  if [ -d "corpus/$target" ]; then
    (cd "corpus/$target" && zip -q -r "$OUT/${target}_seed_corpus.zip" .)
  fi
  case "$target" in
    scenario_file) cp dict/scenario.dict "$OUT/$target.dict" ;;
    e2ee_envelope) cp dict/e2ee.dict "$OUT/$target.dict" ;;
    idproof_json|enroll_body) cp dict/idproof.dict "$OUT/$target.dict" ;;
    *) cp dict/xmpp.dict "$OUT/$target.dict" ;;
  esac
done
