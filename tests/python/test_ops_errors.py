"""Bad input to the ops gets an error that names the argument and the expected value.
These run on the CPU: every check before the device check is reachable without a GPU."""

import pytest
import torch

import moejit
from moejit import Topology, ops


@pytest.fixture
def topo():
    return Topology.from_mask(torch.tensor([[True, False], [True, True]]), 128)


def bf16(*shape):
    return torch.randn(*shape).to(torch.bfloat16)


def test_sdd_wrong_dtype(topo):
    with pytest.raises(ValueError, match=r"a\.dtype=torch\.float32: expected torch\.bfloat16 or torch\.float16"):
        ops.sdd(torch.randn(256, 128), bf16(128, 256), topo)


def test_sdd_mixed_dtypes(topo):
    with pytest.raises(ValueError, match=r"b\.dtype=torch\.float16: expected torch\.bfloat16, the dtype of a"):
        ops.sdd(bf16(256, 128), torch.randn(128, 256).half(), topo)


def test_sdd_not_a_matrix(topo):
    with pytest.raises(ValueError, match=r"a\.dim\(\)=3: expected a 2-D matrix"):
        ops.sdd(bf16(2, 256, 128), bf16(128, 256), topo)


def test_sdd_not_a_tensor(topo):
    with pytest.raises(TypeError, match=r"a: expected a torch\.Tensor, got list"):
        ops.sdd([[1.0]], bf16(128, 256), topo)


def test_sdd_rows_must_match_topology(topo):
    with pytest.raises(ValueError, match=r"a\.shape\[0\]=200: expected 256 \(topology\.rows\)"):
        ops.sdd(bf16(200, 128), bf16(128, 256), topo)


def test_sdd_reduction_extent(topo):
    with pytest.raises(ValueError, match=r"b\.shape\[0\]=64: expected 128 \(a\.shape\[1\], the reduction extent\)"):
        ops.sdd(bf16(256, 128), bf16(64, 256), topo)


def test_sdd_columns_must_match_topology(topo):
    with pytest.raises(ValueError, match=r"b\.shape\[1\]=384: expected 256 \(topology\.cols\)"):
        ops.sdd(bf16(256, 128), bf16(128, 384), topo)


def test_strided_operand_is_rejected(topo):
    a = bf16(256, 256)[:, ::2]
    with pytest.raises(ValueError, match=r"a\.stride\(\)=\(256, 2\): expected a row-major matrix"):
        ops.sdd(a, bf16(128, 256), topo)


def test_misaligned_leading_dimension(topo):
    a = bf16(256, 132)[:, :128]   # rows 132 elements apart: not 16-byte aligned
    with pytest.raises(ValueError, match=r"a: leading dimension 132 is not a multiple of 8"):
        ops.sdd(a, bf16(128, 256), topo)


def test_transposed_views_are_accepted_up_to_the_device_check(topo):
    # A .t() view is a valid operand; the CPU tensors then fail only on the device.
    with pytest.raises(ValueError, match=r"a\.device=cpu: expected a CUDA device"):
        ops.sdd(bf16(128, 256).t(), bf16(256, 128).t(), topo)


def test_out_shape_is_checked(topo):
    with pytest.raises(ValueError, match=r"out\.shape=\(2, 128, 128\): expected \(3, 128, 128\)"):
        ops.sdd(bf16(256, 128), bf16(128, 256), topo, out=torch.empty(2, 128, 128, dtype=torch.bfloat16))


def test_dsd_sparse_must_be_a_block_sparse_matrix():
    with pytest.raises(TypeError, match=r"sparse: expected a moejit\.BlockSparseMatrix, got Tensor"):
        ops.dsd(bf16(256, 256), bf16(256, 128))


def test_dsd_sparse_data_shape(topo):
    sparse = moejit.BlockSparseMatrix(bf16(2, 128, 128), topo)   # topology has 3 blocks
    with pytest.raises(ValueError, match=r"sparse\.data: expected a contiguous tensor of shape \(3, 128, 128\)"):
        ops.dsd(sparse, bf16(256, 128))


def test_dsd_reduction_extent_of_transposed_view():
    topo = Topology.from_mask(torch.ones(3, 2, dtype=torch.bool), 128)
    sparse = moejit.BlockSparseMatrix(bf16(6, 128, 128), topo).t()   # 256 x 384
    assert sparse.shape == (256, 384)
    with pytest.raises(ValueError, match=r"b\.shape\[0\]=256: expected 384"):
        ops.dsd(sparse, bf16(256, 128))


def test_dds_reduction_extent(topo):
    sparse = moejit.BlockSparseMatrix(bf16(3, 128, 128), topo)
    with pytest.raises(ValueError, match=r"a\.shape\[1\]=128: expected 256 \(sparse\.shape\[0\]"):
        ops.dds(bf16(64, 128), sparse)


def test_dds_on_cpu_names_the_device(topo):
    sparse = moejit.BlockSparseMatrix(bf16(3, 128, 128), topo)
    with pytest.raises(ValueError, match=r"a\.device=cpu: expected a CUDA device"):
        ops.dds(bf16(64, 256), sparse)


def test_to_dense_and_transpose(topo):
    data = bf16(3, 128, 128)
    sparse = moejit.BlockSparseMatrix(data, topo)
    dense = sparse.to_dense()
    assert torch.equal(dense[:128, :128], data[0])
    assert torch.equal(dense[:128, 128:], torch.zeros(128, 128, dtype=torch.bfloat16))
    assert torch.equal(dense[128:, :128], data[1])
    assert torch.equal(sparse.t().to_dense(), dense.t())
