"""Autograd semantics: graph shapes, accumulation, freeing, no_grad, errors."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tinygan as tg


def leaf(values, dtype=np.float64):
    return tg.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_deep_chain_of_10000_ops():
    x = leaf(1.0)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001**10_000, rtol=1e-10)


def test_reused_node_gets_the_sum_of_its_gradients():
    x = leaf([1.0, 2.0])
    a = x * 3  # a feeds two branches: a diamond
    y = a * a + a
    y.sum().backward()
    np.testing.assert_allclose(x.grad, (2 * 3 * x.data * 3 + 3))


def test_same_tensor_twice_in_one_op():
    x = leaf([1.5, -2.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)


def test_backward_twice_accumulates_like_pytorch():
    x = leaf([1.0, 2.0])
    for _ in range(2):
        (x * x).sum().backward()  # a new graph each time
    np.testing.assert_array_equal(x.grad, 4 * x.data)
    y = (x * x).sum()
    x.grad = None
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, 4 * x.data)


def test_a_function_instance_records_one_call():
    # Reusing an instance would overwrite what its first call saved: the first output's
    # backward would fill the second call's inputs (a.grad None, c.grad set).
    a, b, c, d = (leaf([1.0, 2.0]) for _ in range(4))
    mul = tg.function.Mul()
    mul(a, b)
    with pytest.raises(RuntimeError, match="make a new instance per call"):
        mul(c, d)
    act = tg.ops.activation.TanhFunction()
    with pytest.raises(RuntimeError, match="TanhFunction instance called a second time"):
        act(act(a))
    with tg.no_grad():  # also when nothing is recorded: one rule
        act = tg.ops.activation.TanhFunction()
        act(a)
        with pytest.raises(RuntimeError, match="second time"):
            act(a)
    y = tg.function.Mul()
    z = y(a, b)
    z.sum().backward()  # backward released the node: a later call is still a second call
    with pytest.raises(RuntimeError, match="second time"):
        y(a, b)


def test_plain_backward_after_create_graph_leaves_a_numeric_array():
    x = leaf([1.0, 2.0])
    (x**3).sum().backward(create_graph=True)
    assert isinstance(x.grad, tg.Tensor)
    (x**2).sum().backward()
    assert isinstance(x.grad, np.ndarray) and x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, 3 * x.data**2 + 2 * x.data)
    (x**2).sum().backward(create_graph=True)  # and back: a Tensor again, the sum of all three
    assert isinstance(x.grad, tg.Tensor)
    np.testing.assert_array_equal(x.grad.data, 3 * x.data**2 + 4 * x.data)


def test_second_backward_through_a_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_graph_and_saved_arrays_are_freed_after_backward():
    x = leaf(np.ones(5))
    h = x * 2
    ref = weakref.ref(h)
    y = (h * h).sum()
    del h
    gc.collect()
    assert ref() is not None  # the graph keeps h alive...
    y.backward()
    gc.collect()
    assert ref() is None  # ...until backward has used it


def test_no_grad_records_nothing():
    x = leaf([1.0])
    with tg.no_grad():
        y = x * 2
    assert not y.requires_grad and y.creator is None
    assert tg.is_grad_enabled()

    @tg.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_constants_get_no_grad_and_detach_cuts_the_graph():
    x, c = leaf([1.0, 2.0]), tg.tensor(np.array([3.0, 4.0]))
    (x * c + x.detach()).sum().backward()
    np.testing.assert_array_equal(x.grad, [3, 4])
    assert c.grad is None


def test_grads_do_not_alias_each_other_or_the_upstream():
    a, b = leaf(np.ones((2, 3))), leaf(np.ones((2, 3)))
    u = np.ones((2, 3))
    (a + b).reshape(3, 2).reshape(2, 3).backward(u)
    assert not np.shares_memory(a.grad, b.grad)
    assert not np.shares_memory(a.grad, u) and not np.shares_memory(b.grad, u)
    a.grad *= 2  # in place on one grad leaves the others alone
    np.testing.assert_array_equal(b.grad, 1)
    np.testing.assert_array_equal(u, 1)


def test_broadcast_grads_are_real_writable_arrays():
    x = leaf(np.ones(3))
    x.sum().backward()
    x.grad += 1
    np.testing.assert_array_equal(x.grad, 2)


def test_intermediate_grads_are_not_kept():
    x = leaf([1.0, 2.0])
    h = x * 2
    (h * h).sum().backward()
    assert h.grad is None and x.grad is not None


def test_implicit_grad_only_for_one_element_outputs():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"one-element.*\(2,\)"):
        (x * 2).backward()
    (x * 2)[1:].backward()  # one element: fine
    np.testing.assert_array_equal(x.grad, [0, 2])


def test_backward_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.tensor(np.ones(2)).sum().backward()
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\(2,\) float64; got \(3,\) float64"):
        (x * 2).backward(np.ones(3))
    with pytest.raises(ValueError, match="float32"):
        (x * 2).backward(np.ones(2, np.float32))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        tg.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="object"):
        tg.Tensor([object()])


def test_python_scalars_keep_float32():
    x = leaf([1.0, 2.0], np.float32)
    y = ((x * 2.5 + 1) / 3 - 0.5) ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_tensor_basics():
    t = tg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.ndim == 2 and t.numel() == 4 and len(t) == 2
    assert t.dtype == np.float64 and t.device == "cpu"
    assert t.sum().item() == 10.0
    assert isinstance(t.numpy(), np.ndarray)
    assert "Tensor(" in repr(t)
    with pytest.raises(ValueError, match="one element"):
        t.item()
    with pytest.raises(TypeError, match="detach"):
        tg.Tensor(t)


@pytest.mark.parametrize("through", ["transpose", "detach", "reshape"])
def test_a_change_seen_through_a_view_or_detach_also_refuses(through):
    """(From review: a view or a detach() of a weight is another Tensor over the same memory,
    so a step of the weight passed the check and tg.grad returned the new weight's values,
    [[-7, -6]] instead of [[3, 4]].)"""
    from tinygan import optim

    x = tg.tensor(np.array([[1.0, 2.0]]), requires_grad=True)
    w = tg.tensor(np.array([[3.0, 4.0]]), requires_grad=True)
    seen = {"transpose": lambda: w.T, "detach": w.detach, "reshape": lambda: w.reshape(2, 1)}
    y = (x @ seen[through]().reshape(2, 1)).sum()
    w.grad = np.array([[10.0, 10.0]])
    optim.SGD([w], lr=1.0).step()
    with pytest.raises(RuntimeError, match="was changed after the op used it"):
        tg.grad(y, x)
    assert x.grad is None


def test_a_call_that_raised_leaves_the_instance_unused():
    """(From review: the instance counted as used, so a retry said "called a second time".)"""
    bad = tg.function.Mul()
    with pytest.raises(ValueError, match="cannot be broadcast"):
        bad(leaf([1.0, 2.0]), leaf([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(bad(leaf([1.0, 2.0]), leaf([3.0, 4.0])).data, [3.0, 8.0])


def test_a_forward_must_return_one_array():
    """(From review: a forward returning (a * b, a + b) was stacked into one (2, n) tensor.)"""

    class Two(tg.Function):
        def forward(self, a):
            return a * 2, a + 1

    with pytest.raises(TypeError, match=r"Two\.forward must return one array; got tuple"):
        Two()(leaf([1.0, 2.0]))


def test_truth_value_of_a_tensor():
    # a 0-d tensor fell back to len() ("len() of unsized object")
    assert tg.tensor(2.0) and not tg.tensor(0.0) and tg.tensor([1.0])
    with pytest.raises(ValueError, match="ambiguous"):
        bool(tg.tensor([1.0, 2.0]))


def test_backward_after_the_inputs_changed_in_place_raises():
    # Without the check, an optimizer step between forward and backward (the classic GAN
    # update-order bug) gave gradients computed from the new weights, without a word.
    from tinygan import nn, optim

    lin = nn.Linear(3, 1, rng=np.random.default_rng(0), dtype=np.float64)
    x = tg.tensor(np.ones((2, 3)))

    def loss():
        return (lin(x) ** 2).sum()

    y = loss()
    y.backward(retain_graph=True)
    optim.SGD(lin.parameters(), lr=0.1).step()
    with pytest.raises(
        RuntimeError, match=r"input 1 of <LinearFunction> \(\(1, 3\) float64\) was changed"
    ):
        y.backward()
    y = loss()
    lin.load_state_dict(lin.state_dict())
    with pytest.raises(RuntimeError, match="was changed after the op used it"):
        y.backward()
    y = loss()
    lin.weight.data = lin.weight.data.copy()  # a new array: also not what forward saw
    with pytest.raises(RuntimeError, match="was changed after the op used it"):
        y.backward()
    loss().backward()  # a fresh forward is fine
