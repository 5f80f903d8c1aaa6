"""On PYTHONPATH with LFTRACE_TEST_SLOW_HELPER=S: lftrace's export helper process (``python -c CODE .../src``)
starts S seconds late, as on a busy machine (tests/test_export_process.py)."""

import os
import sys
import time

if os.environ.get("LFTRACE_TEST_SLOW_HELPER") and sys.argv[:1] == ["-c"] and sys.argv[-1].endswith("src"):
    time.sleep(float(os.environ["LFTRACE_TEST_SLOW_HELPER"]))
