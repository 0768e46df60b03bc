"""vSAN replication factors as vSAN writes them, and rounding up."""

from fractions import Fraction

import pytest

from vmcoreos.vsphere import space


@pytest.mark.parametrize("ftt, erasure, factor, rule", [
    (0, False, Fraction(1), "FTT=0, RAID-1"), (1, False, Fraction(2), "FTT=1, RAID-1"),
    (2, False, Fraction(3), "FTT=2, RAID-1"), (1, True, Fraction(4, 3), "FTT=1, RAID-5"),
    (2, True, Fraction(3, 2), "FTT=2, RAID-6"), (3, True, Fraction(4), "FTT=3, RAID-1"),
])
def test_replication(ftt, erasure, factor, rule):
    assert space.replication(ftt, erasure) == (factor, rule)


def test_a_charge_is_rounded_up():
    assert space.Room(0, True, Fraction(4, 3)).charge(3) == 4
    assert space.Room(0, True, Fraction(4, 3)).charge(4) == 6
    assert space.factor_text(Fraction(4, 3)) == "1.33" and space.factor_text(Fraction(2)) == "2"
