"""Every error reaches Python as an exception carrying the library's message."""

import pytest
import torch

import flatgather


@pytest.fixture
def ab():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)


# (id, call, expected exception type, regex on its message)
def _library_cases(a, b):
    base = torch.randn(10)
    linear = torch.nn.Linear(2, 2)
    return [
        ("empty list", lambda: flatgather.gather([]), "empty selection"),
        ("mixed dtypes", lambda: flatgather.gather([a, b.double()]),
         r"mixed dtypes: tensor 'tensor\[1\]' \(shape \[5\], float64, cpu\).*pass a flat dtype"),
        ("unsupported cast", lambda: flatgather.gather([torch.arange(3)], dtype=torch.float32),
         r"'tensor\[0\]'.*int64.*cannot be cast to the flat dtype float32"),
        ("complex", lambda: flatgather.Plan([torch.randn(3, dtype=torch.complex64)]),
         "is complex; use torch.view_as_real"),
        ("sparse", lambda: flatgather.Plan([torch.randn(3, 3).to_sparse()]),
         r"only dense \(strided\) tensors.*to_dense"),
        ("quantized", lambda: flatgather.Plan(
            [torch.quantize_per_tensor(torch.randn(3), 0.1, 0, torch.quint8)]),
         "is quantized; dequantize it first"),
        ("meta device", lambda: flatgather.Plan([torch.empty(3, device="meta")]),
         "only cpu and cuda tensors are supported"),
        ("flat too short", lambda: flatgather.Plan([a, b]).scatter(torch.zeros(16)),
         "scatter: the flat tensor has 16 elements but the layout needs 17"),
        ("flat wrong dtype", lambda: flatgather.Plan([a, b]).scatter_add(
            torch.zeros(17, dtype=torch.float64)),
         "scatter_add: the flat tensor has dtype .* but the layout is float32"),
        ("one-off scatter wrong dtype", lambda: flatgather.scatter(
            torch.zeros(17, dtype=torch.float64), [a, b]), "but the layout is float32"),
        ("flat not contiguous", lambda: flatgather.Plan([a, b]).gather(out=torch.zeros(34)[::2]),
         "must be 1-D and contiguous.*not contiguous"),
        ("flat 2-D", lambda: flatgather.Plan([a, b]).scatter(torch.zeros(17, 1)),
         r"must be 1-D and contiguous, got shape \[17, 1\]"),
        ("overlapping scatter", lambda: flatgather.Plan([base[:6], base[3:9]]).scatter(
            torch.zeros(12)), "overlap in memory without being the same tensor"),
        ("out aliases a source", lambda: flatgather.Plan([base[:5]]).gather(out=base[2:7]),
         "the flat buffer overlaps the memory of tensor 'tensor\\[0\\]'"),
        ("views of a cast plan", lambda: flatgather.Plan([a, b.half()], dtype=torch.float32)
         .views(torch.zeros(17)), "views need the flat dtype to equal every tensor's dtype"),
        ("bad alignment", lambda: flatgather.Plan([a], align_bytes=24),
         "align_bytes must be 0 \\(no padding\\) or a power of two"),
        ("bad regex", lambda: flatgather.Plan.from_module(linear, include="re:(["),
         r"selection pattern 're:\(\[' is not a valid regex"),
        ("empty module selection", lambda: flatgather.Plan.from_module(linear, include="x*"),
         "empty selection: no tensor of the module matches"),
        ("grads of buffers", lambda: flatgather.Plan.from_module(linear, grads=True,
                                                                 buffers=True),
         "buffers have no gradients"),
        ("missing grad", lambda: flatgather.Plan.from_module(linear, grads=True),
         r"gradient of parameter 'weight'.*undefined.*run backward first"),
        ("manifest mismatch", lambda: flatgather.Plan([a, b]).check_manifest(
            flatgather.Plan([b, a]).manifest()), "flatgather: .*"),
        ("bad manifest json", lambda: flatgather.Plan([a]).check_manifest("{not json"),
         "flatgather: .*"),
    ]


def test_library_errors_are_runtime_errors_with_messages(ab):
    for name, call, pattern in _library_cases(*ab):
        with pytest.raises(RuntimeError, match=pattern) as info:
            call()
        message = str(info.value)
        assert message.startswith("flatgather: "), (name, message)
        assert "Exception raised from" not in message, (name, message)  # no C++ noise


def test_tensor_changed_after_planning(ab):
    a, _ = ab
    t = torch.randn(4)
    plan = flatgather.Plan([t], names=["w"])
    t.resize_(5)
    with pytest.raises(RuntimeError, match=r"tensor 'w' .* changed since the plan was built"):
        plan.gather()


def test_python_argument_errors(ab):
    a, b = ab
    with pytest.raises(TypeError, match=r"got a single tensor; wrap it in a list"):
        flatgather.Plan(a)
    with pytest.raises(TypeError,
                       match=r"tensors\[1\] is None, not a tensor \(an undefined gradient\?"):
        flatgather.gather([a, None])
    with pytest.raises(TypeError, match=r"tensors\[0\] is int, not a tensor"):
        flatgather.Plan([3])
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        flatgather.Plan([a], dtype="float32")
    with pytest.raises(TypeError, match="align_bytes must be an int"):
        flatgather.Plan([a], align_bytes=16.0)
    with pytest.raises(ValueError, match="got 1 names for 2 tensors"):
        flatgather.Plan([a, b], names=["x"])
    with pytest.raises(TypeError, match="from_module needs a torch.nn.Module"):
        flatgather.Plan.from_module([a])
    with pytest.raises(ValueError, match="kind='weight' is not valid"):
        flatgather.Plan.from_module(torch.nn.Linear(2, 2), kind="weight")
    with pytest.raises(ValueError, match="missing_grad='ignore' is not valid"):
        flatgather.Plan.from_module(torch.nn.Linear(2, 2), grads=True, missing_grad="ignore")
    with pytest.raises(TypeError, match="include must be a str or a list of str"):
        flatgather.Plan.from_module(torch.nn.Linear(2, 2), include=[1])


def test_operator_errors_through_torch_ops(ab):
    a, b = ab
    with pytest.raises(RuntimeError, match="^flatgather: mixed dtypes"):
        torch.ops.flatgather.gather([a, b.double()])
    with pytest.raises(RuntimeError, match="kind='everything' is not valid"):
        torch.ops.flatgather.plan_from_module(["w"], [a], [False], [], [],
                                              kind="everything")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_devices(ab):
    a, b = ab
    with pytest.raises(RuntimeError, match="device"):
        flatgather.gather([a, b.cuda()])


# NOTE: [spelling] (src/torch/spelling.h): messages name options, unsupported dtypes and
# layouts as Python code writes them, never as the C++ enumerators a Python user cannot type.
_CPP_ONLY = ("ZeroFill", "MissingGrad", "Skip", "ComplexFloat", "ComplexDouble", "Sparse",
             "=true", "=false", "=1", "=0")


def _message(call):
    with pytest.raises(RuntimeError) as info:
        call()
    message = str(info.value)
    for cpp in _CPP_ONLY:
        assert cpp not in message, (cpp, message)
    return message


def test_messages_use_python_spellings(ab):
    a, _ = ab
    torch.manual_seed(8)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))

    message = _message(lambda: flatgather.Plan.from_module(model, grads=True))
    assert "missing_grad='zero' or 'skip'" in message
    assert "zero_grad(set_to_none=True)" in message

    model(torch.randn(4, 3)).sum().backward()
    strict = flatgather.Plan.from_module(model, grads=True)
    skip = flatgather.Plan.from_module(model, grads=True, missing_grad="skip")
    model[2].bias.grad = None
    assert "build the plan with missing_grad='zero' or 'skip'" in _message(strict.gather)
    message = _message(skip.gather)
    assert "built with missing_grad='skip'," in message
    assert "or use missing_grad='zero'" in message

    assert ("(parameters=True, buffers=False, trainable_only=True, include/exclude patterns: "
            "1/0)") in _message(lambda: flatgather.Plan.from_module(
                model, include="nothing*", trainable_only=True))
    assert "the flat dtype option is complex64," in _message(
        lambda: flatgather.Plan([a], dtype=torch.complex64))
    assert "'tensor[0]' (shape [2], complex128, cpu) is complex" in _message(
        lambda: flatgather.Plan([torch.randn(2, dtype=torch.complex128)]))
    assert "has layout torch.sparse_coo;" in _message(
        lambda: flatgather.Plan([a.to_sparse()]))
    assert "has dtype complex64 but the layout is float32" in _message(
        lambda: flatgather.Plan([a]).gather(out=torch.empty(12, dtype=torch.complex64)))


def test_module_walk_lists_must_match():
    a = torch.randn(3)
    with pytest.raises(RuntimeError, match="got 1 names, 2 tensors and 1 buffer flags"):
        torch.ops.flatgather.plan_from_module(["w"], [a, a], [False], [], [])
