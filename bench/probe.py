"""How fast this machine's cores are right now: a fixed piece of interpreter work, timed.

The shared test machines' speed moves from one minute to the next (neighbours on
the host, a core's hyperthread sibling busy) by more than most changes under
test. Every benchmark result records two figures (bench.common.machine):

- `cpu_probe_ms`: one core doing the work alone;
- `cpu_probe_all_cores_ms`: every core doing it at once, as in a load test that
  keeps the whole machine busy. Where the cores share hardware, this is slower.

Results measured at different probes are not comparable one to one.

    python -m bench.probe            # both figures
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_probe_ms(rounds: int = 5) -> float:
    """Milliseconds one core takes for the work (dict and string churn, like a
    service's per-frame Python), the median of `rounds`."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        table: dict[int, tuple[int, str]] = {}
        for i in range(300_000):
            table[i & 1023] = (i, str(i))
        times.append(time.perf_counter() - start)
    return round(1000 * sorted(times)[rounds // 2], 1)


def cpu_probe_all_cores_ms(lead_s: float = 1.5) -> float:
    """The median of cpu_probe_ms run in a process per core, all started at the same
    moment (`lead_s` from now, time for the interpreters to start)."""
    at = time.time() + lead_s
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    children = [subprocess.Popen([sys.executable, "-m", "bench.probe", "--at", repr(at)], cwd=ROOT,
                                 env=env, stdout=subprocess.PIPE, text=True)
                for _ in range(os.cpu_count() or 1)]
    results = sorted(float(child.communicate(timeout=60)[0]) for child in children)
    return results[len(results) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--at", type=float, help="start at this time.time() and print one core's figure")
    args = parser.parse_args()
    if args.at is not None:
        time.sleep(max(0.0, args.at - time.time()))
        print(cpu_probe_ms())
        return
    print(f"one core: {cpu_probe_ms()} ms; all {os.cpu_count()} cores at once: "
          f"{cpu_probe_all_cores_ms()} ms each")


if __name__ == "__main__":
    main()
