"""Per-process set-up: with the allocator settings, large temporaries stop page-faulting on every use."""

import subprocess
import sys

from modelserving.runtime.process import GIL_SWITCH_SECONDS

PROGRAM = """
import resource, sys
import numpy as np
from modelserving.runtime.process import keep_large_allocations_on_the_heap
if sys.argv[1] == "tuned":
    assert keep_large_allocations_on_the_heap()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    arrays = [np.ones(1 << 17) for _ in range(4)]
before = faults()
for _ in range(20):
    arrays = [np.ones(1 << 17) for _ in range(4)]  # four 1 MB temporaries alive at once, as in a batch
    del arrays
print((faults() - before) / 20)
"""


def page_faults_per_round(variant: str) -> float:
    output = subprocess.run(
        [sys.executable, "-c", PROGRAM, variant], capture_output=True, text=True, check=True
    ).stdout
    return float(output)


def test_large_temporaries_are_reused_instead_of_faulted_in_again() -> None:
    # glibc's defaults: each round maps and faults in most of its 4 MB again (1 MB = 256 pages).
    assert page_faults_per_round("default") > 256
    assert page_faults_per_round("tuned") < 16


def test_a_worker_hands_the_gil_over_often_and_keeps_native_pools_to_its_setting() -> None:
    program = (
        "import sys, threadpoolctl\n"
        "from modelserving.runtime.process import set_up_worker\n"
        "from modelserving.settings import Settings\n"
        "import numpy\n"
        "set_up_worker(Settings(inference_threads=1))\n"
        "print(sys.getswitchinterval(), max(p['num_threads'] for p in threadpoolctl.threadpool_info()))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    switch, threads = output.split()
    assert float(switch) == GIL_SWITCH_SECONDS < 0.005  # CPython's default
    assert int(threads) == 1
