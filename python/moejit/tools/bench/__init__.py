"""`moejit bench`: moejit next to its peers on the same work, in one process.

    flops.py         useful FLOPs of each kernel and of the whole layer (real tokens only)
    ratios.py        ratio to dense cuBLAS with the same FLOPs, and moejit's speedup over each peer
    systems.py       the peers a run may compare against, and which of them are installed
    token_layout.py  where each routed token lives in each system's layout
    kernel_peers.py  the layer's three products on dense, torch._grouped_mm, padded bmm, stk
    kernel_bench.py  `moejit bench kernels`: check, then time, every system on one model's products
    routing.py       router softmax / top-k, shared by the PyTorch layer and the float32 reference
    layer_peers.py   whole layers: PyTorch dMoE on torch._grouped_mm, a dense MLP, MegaBlocks, moejit.dMoE
    layer_bench.py   `moejit bench layer`: forward and forward+backward of each layer
    measurement.py   CUDA-event timing and peak memory of one call
    environment.py   GPU, driver and versions
    results.py       the results' data model and its JSON form
    report.py        terminal and markdown tables
    chart.py         the PNG chart (matplotlib)

How it measures (../../shared/bench/ANCHORS.md): CUDA events around each call, warm-up
first, the L2 cache flushed before every timed call, inputs rotated between copies, the
median of many calls; random data and routing; every system checked against a float32
reference before it is timed.
"""
