"""The suite's two-worker schedule (tests/conftest.py), driven with stand-in workers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import OWN_STACK_MODULES, pytest_xdist_make_scheduler

OWN = sorted(OWN_STACK_MODULES)[0]
STACK_A, STACK_B = "tests/a/test_on_stack.py", "tests/z/test_on_stack_too.py"
PURE = [f"tests/p/test_pure_{i}.py" for i in range(4)]
COLLECTION = [
    f"{PURE[0]}::t1",
    f"{STACK_A}::t1",
    f"{STACK_A}::t2",
    f"{PURE[1]}::t1",
    f"{OWN}::t1",
    f"{OWN}::t2",
    f"{OWN}::t3",
    f"{PURE[2]}::t1",
    f"{STACK_B}::t1",
    f"{STACK_B}::t2",
    f"{PURE[3]}::t1",
]


class Worker:
    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def schedule(tmp_path: Path, stack_modules: list[str] | None) -> tuple[object, Worker, Worker]:
    listed = tmp_path / "stack-modules.json"
    listed.write_text(json.dumps(stack_modules) if stack_modules is not None else "")
    config = SimpleNamespace(
        getvalue=lambda name: ["2*popen"] if name == "tx" else None,
        option=SimpleNamespace(loadscopereorder=False),
        _lfp_stack_modules=listed,
    )
    scheduler = pytest_xdist_make_scheduler(config, None)
    workers = Worker("gw0"), Worker("gw1")
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, COLLECTION)
    scheduler.schedule()
    return scheduler, *workers


def modules(worker: Worker) -> list[str]:
    return list(dict.fromkeys(COLLECTION[i].split("::")[0] for i in worker.sent))


def test_the_stacks_start_on_different_workers_and_the_rest_goes_to_whoever_is_free(
    tmp_path: Path,
) -> None:
    scheduler, stack_worker, own_worker = schedule(tmp_path, [STACK_A, STACK_B])
    # Each stack whole on one worker, and first.
    assert modules(stack_worker) == [STACK_A, STACK_B]
    assert modules(own_worker) == [OWN]
    # While the stack worker is busy, the other takes the other modules in file order,
    # one at a time as its queue runs low.
    done = 0
    while done < len(own_worker.sent):
        scheduler.mark_test_complete(own_worker, own_worker.sent[done])
        done += 1
        assert len(modules(own_worker)) <= 2 + done  # never all of them at once
    assert modules(own_worker) == [OWN, *PURE]
    assert modules(stack_worker) == [STACK_A, STACK_B]


def test_a_worker_done_with_the_stack_takes_what_is_left(tmp_path: Path) -> None:
    scheduler, stack_worker, own_worker = schedule(tmp_path, [STACK_A, STACK_B])
    for index in list(stack_worker.sent):
        scheduler.mark_test_complete(stack_worker, index)
    assert modules(stack_worker)[:2] == [STACK_A, STACK_B]
    assert set(modules(stack_worker)[2:]) <= set(PURE) and modules(stack_worker)[2:]
    assert modules(own_worker) == [OWN]


def test_without_the_workers_list_every_test_but_the_own_stack_ones_is_one_scope(
    tmp_path: Path,
) -> None:
    _, first, second = schedule(tmp_path, None)
    assert modules(second) == [OWN]
    assert set(modules(first)) == {STACK_A, STACK_B, *PURE}
