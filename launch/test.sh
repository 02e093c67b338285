#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what is missing, then runs pytest.
# Extra arguments go to pytest (e.g. -k pipeline, -m "not slow").
set -euo pipefail
# Every extra but the accelerators': the suite covers TFDS sources, the separation
# metrics and gs:// paths.
# shellcheck source-path=SCRIPTDIR source=setup_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" "tfds,separation,gcs,test"
python -m pytest -q tests "$@"
