import time, torch, sys, cProfile, pstats
from bncompare.networks import get_graph
from bncompare.networks.priors import DirichletPrior
from bncompare.transformer.train import TrainConfig, build_model, make_optimizer, train_step
from bncompare.transformer.trained import PAPER
torch.set_num_threads(1)
t=time.perf_counter(); g = get_graph(sys.argv[1]); print("load", time.perf_counter()-t, "S", sum(g.cards), "M", g.n_nodes, flush=True)
prior = DirichletPrior(1.0)
base = dict(d_model=32, n_head=2, d_ff=64, steps=60, n_queries=4, n_context_max=20, warmup=10)
for recipe in sys.argv[2:]:
    cfg = TrainConfig(**base) if recipe == "trained" else TrainConfig(**{**PAPER, **base, "model": {**PAPER["model"], "d_model": 32, "n_head": 2, "d_ff": 64}} ) if False else None
    if recipe == "trained": cfg = TrainConfig(**base)
    else:
        b = dict(base); md = dict(PAPER["model"], d_model=32, n_head=2, d_ff=64); b.pop("d_model"); b.pop("n_head"); b.pop("d_ff")
        cfg = TrainConfig(model=md, **{k: v for k, v in PAPER.items() if k != "model"}, **b)
    m = build_model(g, cfg); opt = make_optimizer(m, cfg); gen = torch.Generator().manual_seed(0)
    dev = torch.device("cpu")
    pr = cProfile.Profile(); t = time.perf_counter(); n = 2; pr.enable()
    for _ in range(n):
        opt.zero_grad(set_to_none=True); train_step(m, g, prior, cfg, gen, dev, False); opt.step()
    pr.disable()
    print(recipe, "s/step", (time.perf_counter() - t) / n, flush=True)
    pstats.Stats(pr).sort_stats("tottime").print_stats(15)
