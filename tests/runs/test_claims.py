"""Run directories are claimed by one process at a time: others wait and then reuse its result."""

import subprocess
import sys
import threading
import time

from ird_tf.config import ExperimentConfig
from ird_tf.runs import RunResult, read_result, run_claim, write_result


def test_free_run_is_claimed_and_released(tmp_path):
    run_dir = tmp_path / "run"
    with run_claim(run_dir, ExperimentConfig()) as found:
        assert found is None
        assert (run_dir / "lock.pid").read_text().split()[1].isdigit()
    assert not (run_dir / "lock.pid").exists()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "lock.pid").write_text(f"{__import__('socket').gethostname()} {dead.pid}\n")
    with run_claim(run_dir, ExperimentConfig(), poll=0.05) as found:
        assert found is None
        assert (run_dir / "lock.pid").read_text().split()[1] != str(dead.pid)


def test_run_held_by_a_live_process_is_waited_for_then_reused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / "lock.pid").write_text(f"{__import__('socket').gethostname()} {owner.pid}\n")

        def finish():  # the owner finishes the run: result first, then its lock goes
            time.sleep(0.5)
            write_result(RunResult(run_dir, {"test": {"kappa": 0.5}}, 1.0))
            (run_dir / "lock.pid").unlink()

        thread = threading.Thread(target=finish)
        start = time.time()
        thread.start()
        with run_claim(run_dir, ExperimentConfig(), poll=0.05) as found:
            waited = time.time() - start
        thread.join()
    finally:
        owner.kill()
        owner.wait()
    assert waited >= 0.4
    assert found is not None and found.metrics == {"test": {"kappa": 0.5}}
    assert read_result(run_dir).seconds == 1.0
    assert f"being trained by process {owner.pid}" in capsys.readouterr().out
    assert not (run_dir / "lock.pid").exists()


def test_multiworker_runs_are_not_locked(tmp_path):
    cfg = ExperimentConfig()
    cfg.run.strategy = "multiworker"
    with run_claim(tmp_path / "run", cfg) as found:
        assert found is None and not (tmp_path / "run" / "lock.pid").exists()
