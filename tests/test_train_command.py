"""The training command's own options: a value that is not a usable number is one line, never accepted."""
import pytest

from bncompare.errors import BNError
from bncompare.studies.train import parse


@pytest.mark.parametrize("option, value", [("--checkpoint-minutes", "nan"), ("--checkpoint-minutes", "inf"),
                                           ("--checkpoint-minutes", "-1"), ("--checkpoint-every", "-3"),
                                           ("--log-every", "0")])
def test_bad_checkpoint_settings_are_refused(option, value):
    with pytest.raises(BNError, match=option) as err:
        parse(["graph=tree", option, value])
    assert "\n" not in str(err.value)


def test_good_checkpoint_settings_pass():
    args, overrides = parse(["graph=tree", "--checkpoint-minutes", "0.5", "--checkpoint-every", "0"])
    assert args.checkpoint_minutes == 0.5 and overrides == ["graph=tree"]
