"""The memory estimate is an upper bound of the real peak: small studies run in a child process, whose
peak resident memory (``ru_maxrss``) is compared with the estimate the budget check made for them."""
import json
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys
from bncompare.studies.budget import peak
from bncompare.studies.run import compose
from bncompare.studies.runner import run_study
from bncompare.studies.spec import study_spec
from bncompare.studies.truth import build_problem

import bncompare.studies.runner as runner
runner.BACKGROUND_SECONDS = 0  # a second process even for the tiny training of a test
cfg = compose(json.loads(sys.argv[2]))
spec = study_spec(cfg)
estimate = peak(spec, build_problem(spec)[0])[0]
run_study(cfg, sys.argv[1])
# a second process that trained beside the study adds its own peak; other children (a library's helper run
# through fork and exec) are not counted: a forked child's ru_maxrss counts the parent's pages it shared
who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) if sys.argv[3] == "second_process" else (resource.RUSAGE_SELF,)
peak = sum(resource.getrusage(w).ru_maxrss for w in who) * 1024
print(json.dumps({"estimate": estimate, "peak": peak}))
"""


def three_nodes(folder, card: int) -> str:
    """C with parents A and B, every node with ``card`` states: CPTs of card**3 entries per episode."""
    path = folder / f"three-{card}.yaml"
    path.write_text(f"nodes:\n  A: {{card: {card}}}\n  B: {{card: {card}}}\n  C: {{card: {card}, parents: [A, B]}}\n")
    return str(path)


SMOKE = ["study=smoke", "progress=false", "report=false"]
STUDIES = {  # each one stresses another part of the estimate, in a few seconds
    "cpts_mc": lambda d: ["estimators=counting", "graph=file", f"graph.options.path={three_nodes(d, 48)}",
                          "graph.options.truth=prior"],  # 110k-entry CPTs, Monte Carlo joint measures
    "cpts_exact": lambda d: ["estimators=counting", "graph=file", f"graph.options.path={three_nodes(d, 30)}",
                             "graph.options.truth=prior"],  # exact joint
    "rows": lambda d: ["estimators=counting", "graph=tree-7", "episodes=2000", "context_lens=[5,50]",
                       "batch_size=256"],  # many episodes: the rows of every cell
    "attention": lambda d: ["estimators=counting", "+estimators.tf.kind=constructed", "graph=chain-5",
                            "context_lens=[400]", "queries=16", "fidelity.episodes=4"],  # long transformer input
    "second_process": lambda d: ["estimators=counting", "graph=chain-5", "+estimators.tf.kind=trained",
                                 "+estimators.tf.params.train_cfg.steps=20",
                                 f"+estimators.tf.params.cache_dir={d / 'cache'}"],  # a training beside the study
}


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_the_estimate_bounds_the_measured_peak(tmp_path, study):
    overrides = [*SMOKE, *STUDIES[study](tmp_path)]
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "out"), json.dumps(overrides), study],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    print(study, f"estimate {got['estimate'] / 2**20:.0f} MB, measured peak {got['peak'] / 2**20:.0f} MB")
    assert got["peak"] <= got["estimate"] <= 10 * got["peak"]
