"""Studies: compare every estimator on one graph, from the command line or from Python.

    python -m bncompare.studies.run graph=tree          # Hydra app, configs in bncompare/studies/conf
    from bncompare.studies.runner import run_study      # the same from Python, given a config dict
"""
