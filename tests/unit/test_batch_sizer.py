"""The runner's batch sizing (--target-batch-seconds), without a database."""

from adhoc_gc.purge import BatchSizer


def test_fixed_size_without_a_target():
    sizer = BatchSizer(500, None)
    sizer.observe(10.0, full=True)
    assert sizer.size == 500


def test_grows_at_most_one_and_a_half_times_per_batch_up_to_the_ceiling():
    sizer = BatchSizer(1000, 1.0)
    assert sizer.size == 100
    sizes = []
    for _ in range(8):
        sizer.observe(0.01, full=True)  # far faster than the target
        sizes.append(sizer.size)
    assert sizes[:5] == [150, 225, 337, 505, 757]
    assert sizes[-1] == 1000


def test_shrinks_to_what_the_last_batch_says():
    sizer = BatchSizer(1000, 0.5)
    sizer.observe(2.0, full=True)  # 100 stacks took 2 s: 25 take 0.5 s
    assert sizer.size == 25


def test_converges_on_the_target():
    sizer = BatchSizer(10_000, 0.2)
    seconds_per_stack = 0.004
    for _ in range(30):
        sizer.observe(sizer.size * seconds_per_stack, full=True)
    assert abs(sizer.size * seconds_per_stack - 0.2) < 0.02


def test_a_short_last_batch_teaches_nothing():
    sizer = BatchSizer(1000, 0.5)
    sizer.observe(0.001, full=False)
    assert sizer.size == 100


def test_halving_stops_at_one():
    sizer = BatchSizer(5, None)
    assert sizer.halve() and sizer.size == 2
    assert sizer.halve() and sizer.size == 1
    assert not sizer.halve() and sizer.size == 1
