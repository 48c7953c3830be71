"""The benchmark reads its load tools' text with the units they print: h2load's run time in
whichever of us, ms and s nghttp2's `util::format_duration` picks (issue #29: a run that ended
in 998.53ms was read as seconds and crashed the harness), wrk's figures in the microseconds of
its Lua API, and a worker's memory in the kB the kernel prints."""

import pytest
from benchmark import h2load_figures, vm_rss_bytes, wrk_figures

# h2load 1.52's summary, as Debian's nghttp2-client prints it; only the run time changes.
H2LOAD_SUMMARY = """starting benchmark...
spawning thread #0: 16 total client(s).
Warm-up phase is over for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in {finished}, 1517.00 req/s, 251.71KB/s
requests: 1517 total, 1533 started, 1517 done, 1510 succeeded, 7 failed, 2 errored, 1 timeout
status codes: 1517 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 251.71KB (257749) total, 2.38KB (2435) headers (space savings 95.43%), 213.33KB (218448) data
                     min         max         mean         sd        +/- sd
time for request:      6.35ms     28.47ms     10.44ms      2.12ms    83.87%
"""
# --log-file: start (microseconds since the epoch), HTTP status, microseconds to the response's end
H2LOAD_LOG = "".join(f"1764870000{n:06d}\t200\t{time}\n" for n, time in enumerate([900, 100, 500, 300, 700]))


@pytest.mark.parametrize(
    ("finished", "microseconds"),
    [
        ("998.53ms", 998_530),  # a -D1 run that ended just under a second
        ("1.00s", 1_000_000),
        ("12.34s", 12_340_000),
        ("1.25ms", 1_250),
        ("850us", 850),  # under a millisecond h2load prints whole microseconds
    ],
)
def test_h2load_run_time_is_read_in_the_unit_printed(finished: str, microseconds: int) -> None:
    figures = h2load_figures(H2LOAD_SUMMARY.format(finished=finished), H2LOAD_LOG)
    assert figures["duration_us"] == microseconds


def test_h2load_counts_and_latency_percentiles() -> None:
    figures = h2load_figures(H2LOAD_SUMMARY.format(finished="1.00s"), H2LOAD_LOG)
    assert figures == {
        "requests": 1517,  # done
        "duration_us": 1_000_000,
        "errors": 3,  # errored + timeout
        "non_2xx": 7,  # done - succeeded
        "p50_us": 500,
        "p99_us": 900,
    }


def test_h2load_output_without_a_summary_says_so() -> None:
    with pytest.raises(ValueError, match="no summary"):
        h2load_figures("finished in 3.5m, 10 req/s, 1KB/s\n", "")  # a unit h2load never prints


def test_wrk_figures_are_the_numbers_its_script_printed() -> None:
    output = (
        "Running 1s test @ http://127.0.0.1:8000/livez\n"
        '  1 threads and 16 connections\nRESULT {"requests": 2048, "duration_us": 1000123, "errors": 0,'
        ' "non_2xx": 3, "p50_us": 4321, "p99_us": 9876}\n'
    )
    assert wrk_figures(output) == {
        "requests": 2048,
        "duration_us": 1_000_123,
        "errors": 0,
        "non_2xx": 3,
        "p50_us": 4321,
        "p99_us": 9876,
    }
    with pytest.raises(ValueError, match="no RESULT"):
        wrk_figures("Running 1s test @ http://127.0.0.1:8000/livez\n")


def test_resident_memory_is_read_in_the_kernels_kilobytes() -> None:
    status = "Name:\tpython3\nVmPeak:\t  300000 kB\nVmRSS:\t   72704 kB\nRssAnon:\t   60000 kB\n"
    assert vm_rss_bytes(status) == 72704 * 1024
    with pytest.raises(ValueError, match="VmRSS"):
        vm_rss_bytes("Name:\tkthreadd\n")  # a kernel thread has no VmRSS line
