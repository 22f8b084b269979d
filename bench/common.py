"""Small timing helpers shared by the benchmarks: medians of wall-clock runs, ratio lines."""

import statistics
import subprocess
import time


def timed(fn, repeat):
    """Run ``fn`` ``repeat`` times; return the list of wall-clock seconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def run_quiet(argv, env=None):
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)


def report(label, samples, baseline_label, baseline, target=None):
    """Print one line: medians, the ratio and the difference against the same-run baseline."""
    med, base = statistics.median(samples), statistics.median(baseline)
    line = (f"{label:<34} {med * 1000:8.0f} ms   {baseline_label:<28} {base * 1000:8.0f} ms   "
            f"ratio {med / base:5.2f}   +{(med - base) * 1000:6.0f} ms")
    if target:
        line += f"   target {target}"
    print(line, flush=True)
    return med, base
