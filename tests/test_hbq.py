import pytest
import torch

from grn.hbq import (
    HBQ,
    bit_layout_to_bits,
    bits_to_bit_layout,
    bits_to_labels,
    bits_to_values,
    hbq_quantize,
    labels_to_bits,
    labels_to_layout,
    labels_to_values,
    layout_to_labels,
    quantize_ste,
)


@pytest.mark.parametrize("rounds", [1, 2, 3, 4, 6, 8])
def test_error_bound_with_equality(rounds):
    z = torch.linspace(-1, 1, 2**14 + 1, dtype=torch.float64)
    codes = hbq_quantize(z, rounds)
    err = (z - codes.values).abs()
    assert err.max() <= 2.0**-rounds + 1e-15
    assert torch.isclose(err.max(), torch.tensor(2.0**-rounds, dtype=torch.float64))  # reached at z = +-1 etc.
    assert codes.labels.min() >= 0 and codes.labels.max() < 2**rounds


@pytest.mark.parametrize("rounds", [1, 2, 4, 8])
def test_decoders_and_conversions_round_trip(rounds):
    z = torch.rand(3, 5, 4, 4) * 2 - 1
    codes = hbq_quantize(z, rounds)
    assert codes.bits.shape == (*z.shape, rounds)
    assert torch.allclose(labels_to_values(codes.labels, rounds), codes.values, atol=1e-6)
    assert torch.allclose(bits_to_values(codes.bits), codes.values, atol=1e-6)
    assert torch.equal(labels_to_bits(codes.labels, rounds), codes.bits)
    assert torch.equal(bits_to_labels(codes.bits), codes.labels)
    # decode(encode): quantizing the decoded values gives the same codes
    assert torch.equal(hbq_quantize(codes.values, rounds).labels, codes.labels)
    for layout in ("ind", "bit"):
        assert torch.equal(layout_to_labels(labels_to_layout(codes.labels, rounds, layout), rounds, layout),
                           codes.labels)


def test_monotone_in_z():
    z = torch.linspace(-1, 1, 10001)
    for rounds in (1, 3, 4, 8):
        codes = hbq_quantize(z, rounds)
        assert (codes.labels.diff() >= 0).all() and (codes.values.diff() >= 0).all()


@pytest.mark.parametrize(
    "rounds,z,bits,label,value",
    [
        (1, 0.3, [1], 1, 0.5),
        (1, 0.0, [0], 0, -0.5),  # strict '>': zero goes down
        (2, 0.3, [1, 0], 2, 0.25),
        (2, 0.5, [1, 0], 2, 0.25),  # 0.5 > 0.5 is false
        (2, -0.6, [0, 0], 0, -0.75),
        (4, 0.3, [1, 0, 1, 0], 10, 0.3125),
        (4, -0.9, [0, 0, 0, 0], 0, -0.9375),
        (4, 1.0, [1, 1, 1, 1], 15, 0.9375),
    ],
)
def test_hand_worked_examples(rounds, z, bits, label, value):
    codes = hbq_quantize(torch.tensor([z]), rounds)
    assert codes.bits[0].tolist() == bits
    assert codes.labels.item() == label
    assert codes.values.item() == pytest.approx(value)


def test_bit_layout_is_round_major_by_hand():
    # M=2, d=2, one position: channel 0 label 2 -> bits (1, 0); channel 1 label 1 -> bits (0, 1)
    labels = torch.tensor([2, 1]).reshape(1, 2, 1, 1)
    layout = labels_to_layout(labels, 2, "bit")
    assert layout.reshape(-1).tolist() == [1, 0, 0, 1]  # [round0: c0 c1, round1: c0 c1]
    assert torch.equal(labels_to_layout(labels, 2, "ind"), labels)
    bits = labels_to_bits(labels, 2)
    assert torch.equal(bit_layout_to_bits(bits_to_bit_layout(bits), 2), bits)


def test_m4_bit_layout_by_hand():
    labels = torch.tensor([10, 0, 15]).reshape(1, 3, 1, 1)  # 1010, 0000, 1111
    layout = labels_to_layout(labels, 4, "bit").reshape(4, 3)
    assert layout.tolist() == [[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]]


def test_straight_through_gradient_and_continuous():
    z = torch.rand(10, requires_grad=True)
    q = quantize_ste(z * 2 - 1, 4)
    q.sum().backward()
    assert torch.allclose(z.grad, torch.full_like(z, 2.0))
    w = torch.rand(4) * 2 - 1
    assert torch.equal(quantize_ste(w, None), w) and torch.equal(HBQ(None)(w), w)
    with pytest.raises(ValueError):
        HBQ(None).codes(w)
