"""timing.seconds_since_process_start: the job's "first photo examined X s after the process started"."""

from __future__ import annotations

import os
import subprocess
import sys

from facetrain.timing import seconds_since_process_start


def test_it_reads_the_kernels_start_time_of_this_process(tmp_path):
    ticks = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    # a process name with spaces and a ")" in it: fields are counted after the last ")"
    stat.write_text(f"4242 (py) thon) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 {100 * ticks} 20 21\n")
    uptime = tmp_path / "uptime"
    uptime.write_text("103.25 50.00\n")
    assert seconds_since_process_start(stat, uptime) == 3.25
    assert seconds_since_process_start(tmp_path / "absent", uptime) is None
    stat.write_text("garbage")
    assert seconds_since_process_start(stat, uptime) is None


def test_a_fresh_process_reports_its_own_age():
    probe = (
        "import time; time.sleep(0.3); "
        "from facetrain.timing import seconds_since_process_start as age; print(age())"
    )
    age = float(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    assert 0.3 <= age < 5.0
    assert seconds_since_process_start() > age  # this test process is older than that probe
