import pytest

from derainlib.options import check_choice


def test_check_choice_names_the_option_the_value_and_the_choices():
    check_choice("norms", "sum", ("mean", "sum"))
    check_choice("split", "test", {"test": 1, "realproxy": 2})  # a mapping's keys are its choices
    with pytest.raises(ValueError, match=r"norms='max': expected one of \('mean', 'sum'\)"):
        check_choice("norms", "max", ("mean", "sum"))
    with pytest.raises(ValueError, match=r"split='val': expected one of \('test', 'realproxy'\)"):
        check_choice("split", "val", {"test": 1, "realproxy": 2})
