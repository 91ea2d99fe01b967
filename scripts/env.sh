# Shared settings for the project's scripts (sourced, not run).
# Cargo's build folder lives outside the clone so fresh clones (CI) reuse one warm build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}
export TESSERA_FIXTURES=${TESSERA_FIXTURES:-$HOME/.cache/tessera/fixtures}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
