// The expert MLP's activation, forward and backward, on the block data of the first
// product: one pass over the blocks in use, eight 16-bit elements (16 bytes) per thread,
// fp32 arithmetic, one rounding per output.
//
//   expert_activation       out = act(h)            or, with GLU, act(h) * gate
//   expert_activation_grad  dh = g * act'(h)        or, with GLU, dh = g * gate * act'(h),
//                                                    d gate = g * act(h)
//
// PyTorch would spend two kernels on the GLU forward and four on its backward, each a
// full pass over the blocks; here each direction is one. Blocks past the device-side live
// count (a routing plan's unused capacity) get zeros, so every output element is defined.
#pragma once

#include "moejit/activation_kind.h"
#include "moejit/activation_params.h"
#include "moejit/element.cuh"

namespace moejit {

inline constexpr int kActivationThreads = 256;

namespace activation_detail {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

// f(x) and f'(x), in the formulas PyTorch's kernels use, so results agree to rounding.
template <Activation kAct>
struct Function;

template <>
struct Function<Activation::gelu> {
  static __device__ __forceinline__ float value(float x) {
    return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
  }
  static __device__ __forceinline__ float derivative(float x) {
    const float t = tanhf(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  }
};

template <>
struct Function<Activation::gelu_exact> {
  static __device__ __forceinline__ float value(float x) { return 0.5f * x * (1.0f + erff(x * kInvSqrt2)); }
  static __device__ __forceinline__ float derivative(float x) {
    return 0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * __expf(-0.5f * x * x);
  }
};

template <>
struct Function<Activation::silu> {
  static __device__ __forceinline__ float value(float x) { return x * sigmoid(x); }
  static __device__ __forceinline__ float derivative(float x) {
    const float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
};

template <>
struct Function<Activation::relu> {
  static __device__ __forceinline__ float value(float x) { return x > 0.0f ? x : 0.0f; }
  static __device__ __forceinline__ float derivative(float x) { return x > 0.0f ? 1.0f : 0.0f; }
};

// This thread's 16-byte chunk and whether it lies in a live block (-1: past the capacity).
template <int kBlock>
__device__ __forceinline__ int chunk_state(const ActivationParams& p, long long& chunk) {
  constexpr long long kChunksPerBlock = static_cast<long long>(kBlock) * kBlock / 8;
  chunk = static_cast<long long>(blockIdx.x) * kActivationThreads + threadIdx.x;
  if (chunk >= p.capacity_blocks * kChunksPerBlock) return -1;
  const long long live = p.live_nnz != nullptr ? *p.live_nnz : p.capacity_blocks;
  return chunk < live * kChunksPerBlock ? 1 : 0;
}

}  // namespace activation_detail

template <class Element, Activation kAct, bool kGlu, int kBlock>
__global__ void __launch_bounds__(kActivationThreads) expert_activation(const ActivationParams p) {
  namespace d = activation_detail;
  long long chunk = 0;
  const int state = d::chunk_state<kBlock>(p, chunk);
  if (state < 0) return;
  Chunk16* out = static_cast<Chunk16*>(p.out) + chunk;
  if (state == 0) {
    *out = Chunk16{0u, 0u, 0u, 0u};
    return;
  }
  float h[8], y[8];
  unpack8<Element>(static_cast<const Chunk16*>(p.h)[chunk], h);
#pragma unroll
  for (int i = 0; i < 8; ++i) y[i] = d::Function<kAct>::value(h[i]);
  if constexpr (kGlu) {
    float g[8];
    unpack8<Element>(static_cast<const Chunk16*>(p.gate)[chunk], g);
#pragma unroll
    for (int i = 0; i < 8; ++i) y[i] *= g[i];
  }
  *out = pack8<Element>(y);
}

template <class Element, Activation kAct, bool kGlu, int kBlock>
__global__ void __launch_bounds__(kActivationThreads) expert_activation_grad(const ActivationParams p) {
  namespace d = activation_detail;
  long long chunk = 0;
  const int state = d::chunk_state<kBlock>(p, chunk);
  if (state < 0) return;
  Chunk16* dh_out = static_cast<Chunk16*>(p.out) + chunk;
  Chunk16* dgate_out = kGlu ? static_cast<Chunk16*>(p.out_gate) + chunk : nullptr;
  if (state == 0) {
    *dh_out = Chunk16{0u, 0u, 0u, 0u};
    if constexpr (kGlu) *dgate_out = Chunk16{0u, 0u, 0u, 0u};
    return;
  }
  float h[8], g[8], dh[8];
  unpack8<Element>(static_cast<const Chunk16*>(p.h)[chunk], h);
  unpack8<Element>(static_cast<const Chunk16*>(p.grad)[chunk], g);
  if constexpr (kGlu) {
    float gate[8], dgate[8];
    unpack8<Element>(static_cast<const Chunk16*>(p.gate)[chunk], gate);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      dh[i] = g[i] * gate[i] * d::Function<kAct>::derivative(h[i]);
      dgate[i] = g[i] * d::Function<kAct>::value(h[i]);
    }
    *dgate_out = pack8<Element>(dgate);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) dh[i] = g[i] * d::Function<kAct>::derivative(h[i]);
  }
  *dh_out = pack8<Element>(dh);
}

}  // namespace moejit
