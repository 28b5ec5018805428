import bncompare  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported; see bncompare/__init__.py)
