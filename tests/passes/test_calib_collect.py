"""``calib_collect.collect_subsets``: every auto candidate's ranges on several image subsets from one
pass over the images agree with onnxruntime's calibrators run on each subset (``collect``)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from yolocc.passes import calib_select
from yolocc.passes.calib_collect import CHUNK, Subset, collect, collect_subsets


def small_model() -> bytes:
    """x (1, 4, 6, 6) -> Conv -> Relu -> Add(x-ish residual) -> Sigmoid, and a Concat of two branches."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["r", "x"], ["a"]),
             helper.make_node("Sigmoid", ["a"], ["s"]),
             helper.make_node("Concat", ["s", "c"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model).SerializeToString()


@pytest.fixture(scope="module")
def images():
    data = np.random.default_rng(0).normal(size=(2 * CHUNK + 5, 4, 6, 6)).astype(np.float32)
    data *= np.linspace(1, 3, len(data), dtype=np.float32)[:, None, None, None]  # each chunk widens the histograms
    data[7] *= 20  # one image with far larger values
    return data


def reference(model: bytes, data: np.ndarray) -> dict:
    """Every candidate's ranges from onnxruntime's calibrators, one calibrator per method."""
    out = {}
    for method, pcts in calib_select.by_method(calib_select.CANDIDATES).items():
        labels = [label for label in calib_select.CANDIDATES if calib_select.parse(label)[0] == method]
        out.update(zip(labels, collect(model, "x", data, method, pcts)))
    return out


def test_one_pass_over_all_images_is_onnxruntimes_calibrators(images):
    model = small_model()
    done = []
    [got] = collect_subsets(model, "x", images, [Subset(np.arange(len(images)), calib_select.CANDIDATES)],
                            lambda i, n: done.append((i, n)))
    want = reference(model, images)
    assert got["n"] == len(images) and not got["failed"] and set(got["ranges"]) == set(want)
    for label, ranges in want.items():
        assert set(got["ranges"][label]) == set(ranges), label
        assert got["ranges"][label] == ranges, label  # the same collectors on the same chunks
    assert done[-1] == (len(images), len(images))
    assert got["ranges"]["minmax"]["x"][1] > 2 * got["ranges"]["mean-minmax"]["x"][1]


def test_subsets_share_the_pass(images):
    """Cross-fitting's folds: each subset's ranges are those of a calibrator run on its images alone,
    and a subset that wants only minmax gets only that."""
    model = small_model()
    folds = calib_select.fold_indices(len(images), 4)
    sets = [np.setdiff1d(np.arange(len(images)), idx) for idx in folds]
    results = collect_subsets(model, "x", images, [Subset(s, calib_select.CANDIDATES) for s in sets]
                              + [Subset(folds[0], ("minmax",))])
    assert [r["n"] for r in results] == [len(s) for s in sets] + [len(folds[0])]
    assert list(results[-1]["ranges"]) == ["minmax"]
    assert results[-1]["ranges"]["minmax"] == collect(model, "x", images[folds[0]], "minmax")[0]
    for s, got in zip(sets, results):
        assert got["ranges"] == reference(model, images[s])
    # the fold holding the large image (index 7 is in fold 3) is the only one whose ranges miss it
    assert results[3]["ranges"]["minmax"]["x"][1] < results[0]["ranges"]["minmax"]["x"][1]


def test_a_rejected_histogram_leaves_only_its_labels_out(images):
    """A nearly constant tensor makes onnxruntime's percentile histogram fail (too many bins for its
    range); the subset keeps every other candidate and says why."""
    model = small_model()
    flat = np.full_like(images, 1.0) + np.float32(1e-7) * (np.arange(images[0].size, dtype=np.float32)
                                                            .reshape(images[0].shape) % 2)
    with pytest.raises(Exception, match="percentile calibrator failed"):
        collect(model, "x", flat, "percentile", (99.99,))
    [got] = collect_subsets(model, "x", flat, [Subset(np.arange(len(flat)), calib_select.CANDIDATES)])
    percentiles = [label for label in calib_select.CANDIDATES if label.startswith("percentile")]
    assert set(got["failed"]) == set(percentiles)
    assert "percentile calibrator failed" in got["failed"]["percentile 99.99"]
    assert set(got["ranges"]) == set(calib_select.CANDIDATES) - set(percentiles)


def test_an_empty_subset_is_refused(images):
    with pytest.raises(Exception, match="empty"):
        collect_subsets(small_model(), "x", images, [Subset(np.arange(0), ("minmax",))])
