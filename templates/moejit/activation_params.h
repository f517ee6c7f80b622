// The kernel parameter of the expert activation kernels (activation.cuh): elementwise over
// the block data [capacity blocks][block][block] of the first expert product. Plain C++.
#pragma once

namespace moejit {

struct ActivationParams {
  const void* h;          // pre-activation blocks (x @ w1.t())
  const void* gate;       // GLU: the gate blocks (x @ v1.t()); nullptr without GLU
  const void* grad;       // backward: d(activation output)
  void* out;              // forward: act(h) [* gate];  backward: d h
  void* out_gate;         // backward with GLU: d gate
  const int* live_nnz;    // blocks in use (device); nullptr: all `capacity_blocks`
  long long capacity_blocks;
};

}  // namespace moejit
