"""The GPU check runs on a lent machine with minutes of device time; its dry run takes every path of it on
the CPU at toy sizes, so that a mistake is found here and not there."""

import math

from benchmarks import gpu_check


def test_gpu_check_dry_run_takes_every_path_and_projects_the_suite():
    import torch

    record = gpu_check.measure(torch.device("cpu"), gpu_check.DRY)
    assert record["train_loss_finite"] and record["fid_bootstrap_finite"]
    assert record["sampling_nfe_per_image"] > 0 and 0 < record["fraction_of_measured_roofline"]
    assert record["frechet_device_cpu_rel_diff"] < 1e-9 and record["inception_device_vs_cpu_max_abs_diff"] == 0
    projection = record["imagenet_gen_projection_s"]
    assert set(projection) == {"sampling", "decoding", "features", "bootstrap", "total"}
    assert math.isclose(projection["total"], sum(v for k, v in projection.items() if k != "total"))
