"""Stage accounting (grn_eval/stages.py): exclusive seconds, inclusive peak memory, nothing outside a log."""

import time

import numpy as np

from grn_eval.stages import StageLog, stage, suspended


def test_nested_stages_split_time_and_share_the_peak():
    log = StageLog()
    t0 = time.perf_counter()
    with log.active():
        with stage("outer"):
            time.sleep(0.05)
            with stage("inner"):
                time.sleep(0.1)
                block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched: resident
                del block
            with suspended(), stage("not recorded"):
                time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    rec = log.summary()
    assert set(rec) == {"outer", "inner"} and rec["outer"]["calls"] == rec["inner"]["calls"] == 1
    assert rec["outer"]["seconds"] >= 0.1 and rec["inner"]["seconds"] >= 0.1  # outer: its own and the suspended
    assert rec["outer"]["seconds"] + rec["inner"]["seconds"] <= elapsed  # the inner time is not in the outer
    assert rec["outer"]["peak_rss_bytes"] >= rec["inner"]["peak_rss_bytes"] > 64 * 2**20


def test_outside_a_log_a_stage_records_nothing():
    log = StageLog()
    with stage("free"):
        pass
    assert log.summary() == {}
