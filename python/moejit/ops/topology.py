"""Block-sparse matrix topology: the int32 metadata of a block-sparse matrix.

A block-sparse matrix of shape (rows, cols) is cut into b x b blocks
(b = ``block_size``, 64 or 128).  Only ``nnz`` nonzero blocks are stored, in
row-major block order (by block row, then block column); their values live
elsewhere as a tensor of shape [nnz, b, b].  A :class:`Topology` describes
which blocks those are, both in row-major (CSR-like) form and in column-major
(CSC-like) form so that kernels can walk the transpose without re-sorting:

* ``row_indices[nnz]``       block row of each stored block.
* ``column_indices[nnz]``    block column of each stored block.
* ``offsets[block_rows+1]``  CSR offsets: blocks of block row r are
                             ``offsets[r]:offsets[r+1]``.
* ``column_indices_t[nnz]``  for the blocks in column-major order (by block
                             column, then block row), the block row of each,
                             i.e. the column indices of the transposed matrix.
* ``offsets_t[block_cols+1]`` CSC offsets of the block columns.
* ``block_offsets_t[nnz]``   the j-th block in column-major order is stored at
                             ``data[block_offsets_t[j]]``.

All tensors are int32, 1-D, contiguous and on the same device.

A topology built on the GPU by the routing kernels (:mod:`moejit.ops.routing`) is sized for
the most blocks the routing can produce, so the host never waits for the real count:
``live_nnz`` is then a one-element device tensor with the number of blocks in use, the
entries past it are unused (``block_offsets_t[j] = j`` there, so each stored block still
appears once in the column-major order), and the unused block rows have empty offset ranges.
The products take a block as unused when its stored index is at least ``live_nnz``; the
wgmma sdd tiles that pair two blocks (tile_m = 2 x block_size, an explicit tile only) go by
its column-major position instead, so they need what the routing kernels build: the live
blocks first in both orders.

``live_rows``, also optional (and also filled by the routing kernels), is a [block_rows]
int32 device tensor with the rows in use of each block row, a prefix of it (for the MoE
topology: the expert's tokens, the rest padding up to whole blocks). The rows after them
must contribute nothing to the products, holding zeros in the sparse operand or in the
dense one they meet (moejit.route's gathers write zeros there). The wgmma dsd with the
sparse operand transposed, whose reduction runs over those rows, ends each block column's
reduction at the last 16-row K slice of its last block that holds any of them.
"""

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

_BLOCK_SIZES = (64, 128)
_INT32_MAX = 2**31 - 1
_TENSOR_FIELDS = (
    "row_indices",
    "column_indices",
    "offsets",
    "column_indices_t",
    "offsets_t",
    "block_offsets_t",
)
_OPTIONAL_TENSOR_FIELDS = ("live_nnz", "live_rows")


class TopologyError(ValueError):
    """An argument or a Topology field is invalid."""


def _is_int(value) -> bool:
    # bool is a subclass of int but is never a meaningful size.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _describe(tensor: torch.Tensor) -> str:
    return f"tensor(shape={tuple(tensor.shape)}, dtype={tensor.dtype}, device={tensor.device})"


def _first_true(mask: torch.Tensor) -> Optional[int]:
    """Index of the first True element of a 1-D bool tensor, or None."""
    hits = mask.nonzero()
    return int(hits[0]) if hits.numel() else None


def _check_block_size(block_size) -> None:
    if not _is_int(block_size) or block_size not in _BLOCK_SIZES:
        raise TopologyError(f"block_size={block_size!r}: expected 64 or 128")


def _check_int32_size(name: str, value: int) -> None:
    if value > _INT32_MAX:
        raise TopologyError(f"{name}={value}: expected at most {_INT32_MAX} to fit the int32 metadata")


def _check_counts(tokens_per_expert) -> torch.Tensor:
    """Checks dtype and shape of per-expert counts; returns them as int64.

    The sign is not checked here because that needs a host synchronisation.
    """
    if not isinstance(tokens_per_expert, torch.Tensor):
        raise TopologyError(
            f"tokens_per_expert={tokens_per_expert!r}: expected a 1-D integer torch.Tensor"
        )
    if tokens_per_expert.dim() != 1 or not _is_integer_dtype(tokens_per_expert.dtype):
        raise TopologyError(
            f"tokens_per_expert={_describe(tokens_per_expert)}: expected a 1-D integer tensor"
        )
    if tokens_per_expert.numel() == 0:
        raise TopologyError(
            f"tokens_per_expert={_describe(tokens_per_expert)}: expected at least one expert"
        )
    return tokens_per_expert.to(torch.int64)


def _csr_offsets(sorted_indices: torch.Tensor, count: int) -> torch.Tensor:
    """Offsets [count+1] of the runs of equal values in a sorted index tensor."""
    boundaries = torch.arange(count + 1, dtype=sorted_indices.dtype, device=sorted_indices.device)
    return torch.searchsorted(sorted_indices, boundaries, out_int32=True)


@dataclass(frozen=True, eq=False, repr=False)
class Topology:
    """Metadata of a block-sparse matrix; see the module docstring for the fields.

    Construct with :meth:`from_mask` or :meth:`from_expert_counts`.  Direct
    construction does not check anything; call :meth:`validate` on
    topologies that were not built by those constructors.
    """

    rows: int
    cols: int
    block_size: int
    row_indices: torch.Tensor
    column_indices: torch.Tensor
    offsets: torch.Tensor
    column_indices_t: torch.Tensor
    offsets_t: torch.Tensor
    block_offsets_t: torch.Tensor
    live_nnz: Optional[torch.Tensor] = None
    live_rows: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------
    # Properties

    @property
    def nnz(self) -> int:
        """Stored blocks; with ``live_nnz``, the capacity (an upper bound of those in use)."""
        return self.row_indices.numel()

    def live(self) -> "Topology":
        """This topology without unused capacity: itself when ``live_nnz`` is None, else
        a copy cut to the blocks in use (one host synchronisation; for tests and debugging)."""
        if self.live_nnz is None:
            return self
        nnz = int(self.live_nnz.item())
        block_rows = int(torch.searchsorted(self.offsets, torch.tensor([nnz], dtype=torch.int32,
                                                                       device=self.device)).item())
        return Topology(
            block_rows * self.block_size, self.cols, self.block_size, self.row_indices[:nnz].clone(),
            self.column_indices[:nnz].clone(), self.offsets[: block_rows + 1].clone(),
            self.column_indices_t[:nnz].clone(), self.offsets_t.clone(), self.block_offsets_t[:nnz].clone(),
            live_rows=None if self.live_rows is None else self.live_rows[:block_rows].clone(),
        )

    @property
    def block_rows(self) -> int:
        return self.rows // self.block_size

    @property
    def block_cols(self) -> int:
        return self.cols // self.block_size

    @property
    def device(self) -> torch.device:
        return self.row_indices.device

    @property
    def shape(self) -> tuple:
        return (self.rows, self.cols)

    def token_bucket(self) -> int:
        """The autotuner's key for this topology's work: rows per block column (for the
        MoE topology, padded tokens per expert) rounded to a power of two."""
        from .. import _core   # the C++ rule, shared with C++ users of the tuner

        return _core.token_bucket(self.nnz * self.block_size, max(self.block_cols, 1))

    def __repr__(self) -> str:
        return (
            f"Topology(rows={self.rows}, cols={self.cols}, block_size={self.block_size}, "
            f"nnz={self.nnz}{' (capacity; live count on the device)' if self.live_nnz is not None else ''}, "
            f"device={self.device})"
        )

    # ------------------------------------------------------------------
    # Construction

    @classmethod
    def _from_row_major(
        cls,
        rows: int,
        cols: int,
        block_size: int,
        row_indices: torch.Tensor,
        column_indices: torch.Tensor,
    ) -> "Topology":
        """Builds all metadata from int64 block coordinates that are already
        in row-major order without duplicates."""
        block_rows, block_cols = rows // block_size, cols // block_size
        _check_int32_size("block_rows", block_rows)
        _check_int32_size("block_cols", block_cols)
        _check_int32_size("nnz", row_indices.numel())

        # A stable sort by column keeps the (ascending) row order inside each
        # column, so it yields exactly the column-major order, and the sort
        # permutation is the map from column-major position to storage index.
        sorted_columns, block_offsets_t = torch.sort(column_indices, stable=True)
        return cls(
            rows=rows,
            cols=cols,
            block_size=block_size,
            row_indices=row_indices.to(torch.int32),
            column_indices=column_indices.to(torch.int32),
            offsets=_csr_offsets(row_indices, block_rows),
            column_indices_t=row_indices[block_offsets_t].to(torch.int32),
            offsets_t=_csr_offsets(sorted_columns, block_cols),
            block_offsets_t=block_offsets_t.to(torch.int32),
        )

    @classmethod
    def from_mask(cls, mask: torch.Tensor, block_size: int) -> "Topology":
        """Topology of the nonzero blocks of ``mask``.

        ``mask`` is a bool (or 0/1 integer) tensor [block_rows, block_cols];
        any pattern is allowed, including empty rows/columns and an all-False
        mask (nnz 0).  Built on ``mask.device``; reading nnz costs one host
        synchronisation (two for integer masks, whose values are checked).
        """
        _check_block_size(block_size)
        if not isinstance(mask, torch.Tensor):
            raise TopologyError(f"mask={mask!r}: expected a 2-D bool torch.Tensor")
        if mask.dim() != 2:
            raise TopologyError(f"mask={_describe(mask)}: expected a 2-D tensor")
        if mask.dtype != torch.bool:
            if not _is_integer_dtype(mask.dtype):
                raise TopologyError(f"mask={_describe(mask)}: expected dtype torch.bool or an integer dtype")
            if ((mask != 0) & (mask != 1)).any():
                raise TopologyError(f"mask={_describe(mask)}: expected integer mask values to be 0 or 1")

        # nonzero() returns coordinates in lexicographic, i.e. row-major, order.
        coords = mask.nonzero()
        block_rows, block_cols = mask.shape
        return cls._from_row_major(
            block_rows * block_size,
            block_cols * block_size,
            block_size,
            coords[:, 0].contiguous(),
            coords[:, 1].contiguous(),
        )

    @staticmethod
    def padded_counts(tokens_per_expert: torch.Tensor, block_size: int) -> torch.Tensor:
        """Per-expert token counts rounded up to a multiple of ``block_size`` (int32).

        Runs without host synchronisation, so negative counts are not
        detected here (:meth:`from_expert_counts` does detect them).
        """
        _check_block_size(block_size)
        counts = _check_counts(tokens_per_expert)
        return ((counts + block_size - 1) // block_size * block_size).to(torch.int32)

    @classmethod
    def from_expert_counts(
        cls, tokens_per_expert: torch.Tensor, block_size: int, ffn_hidden_size: int, *, zero_padding: bool = False
    ) -> "Topology":
        """Block-diagonal topology of a dropless MoE layer (MegaBlocks dMoE).

        Expert e's token count is padded up to a multiple of ``block_size``;
        the expert owns the next padded_e / b block rows and the block columns
        [e * F/b, (e+1) * F/b) with F = ``ffn_hidden_size``.  rows is the sum
        of the padded counts, cols = E * F.  Experts with no tokens own no rows.

        ``zero_padding=True`` promises that the rows padding each expert's tokens hold zeros
        in the dense operands (as a dMoE layer's gather leaves them) and records each block
        row's tokens in ``live_rows``, so the weight-gradient products skip the padding.

        Built on the device of ``tokens_per_expert`` with vectorised ops;
        sizing the output needs exactly one host synchronisation, which reads
        the number of block rows (and the smallest count, for the sign check).
        """
        _check_block_size(block_size)
        if not _is_int(ffn_hidden_size) or ffn_hidden_size <= 0 or ffn_hidden_size % block_size:
            raise TopologyError(
                f"ffn_hidden_size={ffn_hidden_size!r}: expected a positive multiple of "
                f"block_size={block_size}"
            )
        counts = _check_counts(tokens_per_expert)
        device = counts.device
        num_experts = counts.numel()
        blocks_per_expert = (counts + block_size - 1) // block_size

        min_count, block_rows = torch.stack([counts.min(), blocks_per_expert.sum()]).tolist()
        if min_count < 0:
            first = _first_true(counts < 0)
            raise TopologyError(
                f"tokens_per_expert[{first}]={int(counts[first])}: expected non-negative token counts"
            )

        ffn_blocks = ffn_hidden_size // block_size
        # Check before allocating nnz-sized tensors.
        _check_int32_size("nnz", block_rows * ffn_blocks)

        # Every block row holds ffn_blocks consecutive blocks of its expert's columns.
        expert_of_row = torch.repeat_interleave(
            torch.arange(num_experts, device=device), blocks_per_expert, output_size=block_rows
        )
        block = torch.arange(block_rows * ffn_blocks, device=device)
        row_indices = block // ffn_blocks
        column_indices = expert_of_row[row_indices] * ffn_blocks + block % ffn_blocks
        topology = cls._from_row_major(
            block_rows * block_size,
            num_experts * ffn_hidden_size,
            block_size,
            row_indices,
            column_indices,
        )
        if not zero_padding:
            return topology
        # Block row r is block r - first_block[e] of its expert e: the rows of it that
        # hold tokens, all of them but in the expert's last block.
        first_block = torch.cumsum(blocks_per_expert, 0) - blocks_per_expert
        in_expert = torch.arange(block_rows, device=device) - first_block[expert_of_row]
        live_rows = (counts[expert_of_row] - in_expert * block_size).clamp(max=block_size).to(torch.int32)
        return dataclasses.replace(topology, live_rows=live_rows)

    # ------------------------------------------------------------------
    # Checking and conversion

    def validate(self) -> None:
        """Full consistency check; raises TopologyError naming the bad field.

        Synchronises with the device several times; meant for tests,
        debugging and topologies from untrusted sources.
        """
        block_size = self.block_size
        _check_block_size(block_size)
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0 or value % block_size:
                raise TopologyError(
                    f"{name}={value!r}: expected a non-negative multiple of block_size={block_size}"
                )

        self._validate_tensor_properties()
        nnz, block_rows, block_cols = self.nnz, self.block_rows, self.block_cols
        expected_lengths = {
            "column_indices": nnz,
            "offsets": block_rows + 1,
            "column_indices_t": nnz,
            "offsets_t": block_cols + 1,
            "block_offsets_t": nnz,
        }
        for name, length in expected_lengths.items():
            actual = getattr(self, name).numel()
            if actual != length:
                raise TopologyError(
                    f"{name} has length {actual}: expected {length} "
                    f"(nnz={nnz}, block_rows={block_rows}, block_cols={block_cols})"
                )

        self._check_range("row_indices", self.row_indices, "block_rows", block_rows)
        self._check_range("column_indices", self.column_indices, "block_cols", block_cols)
        self._check_range("column_indices_t", self.column_indices_t, "block_rows", block_rows)
        self._check_range("block_offsets_t", self.block_offsets_t, "nnz", nnz)
        if self.live_rows is not None:
            if self.live_rows.numel() != block_rows:
                raise TopologyError(f"live_rows has length {self.live_rows.numel()}: expected block_rows={block_rows}")
            bad = _first_true((self.live_rows < 0) | (self.live_rows > block_size))
            if bad is not None:
                raise TopologyError(f"live_rows[{bad}]={int(self.live_rows[bad])}: expected 0 <= value <= "
                                    f"block_size={block_size}")

        rows = self.row_indices.long()
        columns = self.column_indices.long()
        keys = rows * block_cols + columns
        bad = _first_true(keys[1:] <= keys[:-1])
        if bad is not None:
            raise TopologyError(
                f"row_indices/column_indices: block {bad + 1} at (row {int(rows[bad + 1])}, "
                f"column {int(columns[bad + 1])}) follows (row {int(rows[bad])}, column "
                f"{int(columns[bad])}): expected row-major order without duplicate blocks"
            )
        self._check_equal(
            "offsets", self.offsets, _csr_offsets(rows, block_rows), "the CSR offsets of row_indices"
        )

        # With block_offsets_t in range and of length nnz, strictly increasing
        # column-major keys imply that it is the unique sorting permutation.
        perm = self.block_offsets_t.long()
        rows_t, columns_t = rows[perm], columns[perm]
        keys_t = columns_t * block_rows + rows_t
        bad = _first_true(keys_t[1:] <= keys_t[:-1])
        if bad is not None:
            raise TopologyError(
                f"block_offsets_t[{bad + 1}]={int(perm[bad + 1])} (row {int(rows_t[bad + 1])}, "
                f"column {int(columns_t[bad + 1])}) follows block_offsets_t[{bad}]={int(perm[bad])} "
                f"(row {int(rows_t[bad])}, column {int(columns_t[bad])}): expected a permutation "
                "listing the blocks in column-major order"
            )
        self._check_equal(
            "column_indices_t", self.column_indices_t, rows_t, "the block row in row_indices[block_offsets_t]"
        )
        self._check_equal(
            "offsets_t", self.offsets_t, _csr_offsets(columns_t, block_cols), "the CSC offsets of column_indices"
        )

    def _validate_tensor_properties(self) -> None:
        device = None
        for name in _TENSOR_FIELDS + _OPTIONAL_TENSOR_FIELDS:
            tensor = getattr(self, name)
            if tensor is None and name in _OPTIONAL_TENSOR_FIELDS:
                continue
            if not isinstance(tensor, torch.Tensor):
                raise TopologyError(f"{name}={tensor!r}: expected a torch.Tensor")
            if tensor.dtype != torch.int32:
                raise TopologyError(f"{name}={_describe(tensor)}: expected dtype torch.int32")
            if tensor.dim() != 1:
                raise TopologyError(f"{name}={_describe(tensor)}: expected a 1-D tensor")
            if not tensor.is_contiguous():
                raise TopologyError(f"{name}={_describe(tensor)}: expected a contiguous tensor")
            device = tensor.device if device is None else device
            if tensor.device != device:
                raise TopologyError(
                    f"{name}={_describe(tensor)}: expected device {device} like row_indices"
                )

    @staticmethod
    def _check_range(name: str, tensor: torch.Tensor, bound_name: str, bound: int) -> None:
        bad = _first_true((tensor < 0) | (tensor >= bound))
        if bad is not None:
            raise TopologyError(
                f"{name}[{bad}]={int(tensor[bad])}: expected 0 <= value < {bound_name}={bound}"
            )

    @staticmethod
    def _check_equal(name: str, actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
        bad = _first_true(actual.long() != expected.long())
        if bad is not None:
            raise TopologyError(
                f"{name}[{bad}]={int(actual[bad])}: expected {int(expected[bad])} ({what})"
            )

    def to_mask(self) -> torch.Tensor:
        """Bool tensor [block_rows, block_cols], True at the stored blocks."""
        mask = torch.zeros(self.block_rows, self.block_cols, dtype=torch.bool, device=self.device)
        mask[self.row_indices.long(), self.column_indices.long()] = True
        return mask

    def to(self, device) -> "Topology":
        """Copy of this topology with all metadata on ``device``."""
        return dataclasses.replace(
            self, **{name: getattr(self, name).to(device) for name in _TENSOR_FIELDS},
            **{name: getattr(self, name).to(device) for name in _OPTIONAL_TENSOR_FIELDS
               if getattr(self, name) is not None},
        )
