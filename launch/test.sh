#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what is missing, then runs pytest.
# Extra arguments go to pytest (e.g. -k pipeline, -m "not slow").
set -euo pipefail
# [tfds] and [separation]: the suite covers TFDS sources and the separation metrics; its
# gs:// tests fake Cloud Storage behind tf.io.gfile, so not [gcs] (a missing one is
# simulated).
# shellcheck source-path=SCRIPTDIR source=setup_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" "tfds,separation,test"
python -m pytest -q tests "$@"
