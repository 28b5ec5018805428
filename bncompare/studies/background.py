"""A second process that prepares (trains) one estimator of a study while the study's own process
prepares the others and runs the cells that do not need it: on two cores, the longest training no
longer comes before everything else.

    job = Background.start("trained", spec.estimator("trained"), graph, spec.prior, seed)
    ...                                                                 # the other estimators, their cells
    job.wait()                                                          # then: estimator.prepare() loads it

The child builds the estimator from its kind and settings, the graph and the prior from their records (plain
JSON on its stdin: nothing is unpickled), and calls ``estimator.prepare(graph, prior, seed)``, which trains
into the model cache; the study calls it again once the child is done and loads the cached model. Training
runs on one thread in either process (``transformer.train.train`` is single-threaded), so the weights are the
same bytes whichever process trained them. The child's log lines are the study's, prefixed with the estimator's name.

The child ends with the study, however that ends: SIGTERM when the study's process ends, even by kill -9
(``PR_SET_PDEATHSIG``), and :meth:`Background.stop` on an exception or Ctrl-C. What it leaves in the cache
is what an interrupted training leaves (atomic files, a resumable snapshot). Set ``BNCOMPARE_PARALLEL=0``
to prepare everything in the study's process.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

from bncompare.networks.graph import Graph
from bncompare.processes import ends_with_this_process
from bncompare.studies.spec import EstimatorSpec

log = logging.getLogger(__name__)
CHILD = "from bncompare.studies.background import child; child()"
INTERRUPTED = 130


def enabled() -> bool:
    """Whether a study may use a second process: this process may run on two cores, and the user did not
    turn it off (``BNCOMPARE_PARALLEL=0``)."""
    if os.environ.get("BNCOMPARE_PARALLEL", "1").strip() == "0":
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) >= 2


class Background:
    """One estimator prepared by a child process; :meth:`wait` returns whether it finished well."""

    def __init__(self, name: str, proc: subprocess.Popen):
        self.name, self.proc, self.started = name, proc, time.perf_counter()
        self.last = ""  # the child's last line: its error, when it fails
        self.reader = threading.Thread(target=self._relay, daemon=True)
        self.reader.start()

    @classmethod
    def start(cls, name: str, estimator: EstimatorSpec, graph: Graph, prior: dict, seed: int) -> Background:
        """Start the child preparing ``estimator`` (its study entry: kind and params) on ``graph`` with the prior
        record ``prior`` ({"kind", "params"}, as the study's settings hold it)."""
        task = {"kind": estimator.kind, "params": estimator.params, "seed": int(seed), "prior": prior,
                "graph": {"names": list(graph.names), "cards": list(graph.cards),
                          "parents": [list(p) for p in graph.parents], "variables": graph.variables}}
        data = json.dumps(task).encode()  # the study's settings are plain data: a failure here is a bug
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=False, preexec_fn=ends_with_this_process())
        job = None
        try:
            job = cls(name, proc)
            proc.stdin.write(data)
            proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log.info("%s: training in a second process (pid %d) while this one prepares the other estimators and "
                 "runs their cells", name, proc.pid)
        return job

    def _relay(self) -> None:
        for raw in self.proc.stderr:  # the child's log, line by line, into the study's log
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.last = line
                log.info("%s (second process): %s", self.name, line)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self) -> bool:
        """Wait for the child; True when it prepared the estimator, else False (logged: the study prepares it)."""
        if self.running():
            log.info("waiting for the second process to finish training %s", self.name)
        code = self.proc.wait()
        self.reader.join(timeout=5)
        if code == 0:
            log.info("%s: prepared in the second process in %.1f s", self.name, time.perf_counter() - self.started)
            return True
        log.warning("the second process preparing %s failed (exit %d: %s); preparing it here", self.name, code,
                    self.last or "no message")
        return False

    def stop(self) -> None:
        """End the child if it still runs (the study failed or was interrupted)."""
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def child() -> None:
    """The second process: read the task (JSON) from stdin, build the estimator, graph and prior it names and
    prepare the estimator. Its log goes to stderr (the study relays it); Ctrl-C ends it quietly (the study says
    it was stopped)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        from bncompare.networks.priors import make_prior
        from bncompare.studies.registry import build

        task = json.loads(sys.stdin.buffer.read())
        g = task["graph"]
        graph = Graph(tuple(g["names"]), tuple(g["cards"]), tuple(tuple(p) for p in g["parents"]), g["variables"])
        prior = make_prior(task["prior"]["kind"], **task["prior"]["params"])
        build(task["kind"], task["params"]).prepare(graph, prior, task["seed"])
    except KeyboardInterrupt:
        os._exit(INTERRUPTED)
    except Exception as e:  # noqa: BLE001  one line for the study's log; the study prepares it again and reports
        print(f"{type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        sys.exit(1)
