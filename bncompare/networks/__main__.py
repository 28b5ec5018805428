"""``python -m bncompare.networks``: the network listing (:mod:`bncompare.networks.listing`)."""
import sys

from bncompare.networks.listing import main

sys.exit(main())
