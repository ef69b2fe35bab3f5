"""The budget's one progress display over its trials: running, queued, done, epochs and the time left."""

from yolocc.compiler.trialboard import NAME, TrialBoard


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_board_counts_running_queued_done_and_estimates_the_time_left():
    seen = []
    clock = Clock()
    board = TrialBoard(lambda d, done, total: seen.append((d, done, total)), workers=2, clock=clock)
    idx = board.submit(["a", "b", "c", "d", "e"], [True, True, True, True, False])
    assert seen[-1] == (f"{NAME}\t2 running (a, b), 3 queued, 0 done", 0, 5)  # no ETA before one finished
    board.epoch(3, 30)
    assert seen[-1][0].endswith("2 running (a: epoch 3/30, b), 3 queued, 0 done")
    clock.now = 100.0
    board.finish(idx[1], 120.0)  # b finished first: c starts
    # left: a, c, d (training, mean 120 s) and e (no training: the training mean until one finished)
    assert board.eta_s() == 2 * 120.0
    assert seen[-1] == (f"{NAME}\t2 running (a: epoch 3/30, c), 2 queued, 1 done; about 4 min left", 1, 5)
    board.finish(idx[0], 60.0)
    board.finish(idx[2], 90.0)
    board.finish(idx[3], 90.0)
    assert board.eta_s() == 90.0  # e alone, at the mean of every finished trial
    board.finish(idx[4], 5.0)
    assert seen[-1] == (f"{NAME}\t5 done", 5, 5) and board.eta_s() == 0.0


def test_a_later_batch_adds_to_the_same_display():
    seen = []
    board = TrialBoard(lambda d, done, total: seen.append((d, done, total)))
    first, = board.submit(["int8 alone"], [False])
    board.finish(first, 10.0)
    board.submit(["-30% MACs + distill"], [True])
    assert seen[-1] == (f"{NAME}\t1 running (-30% MACs + distill), 0 queued, 1 done; about 10 s left", 1, 2)
    assert {d.split("\t")[0] for d, _, _ in seen} == {NAME}
