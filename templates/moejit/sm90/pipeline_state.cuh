// A position in the ring of kStages shared-memory stages: which stage and which phase of
// its barriers. Producer and consumers walk the same tiles and count the same steps, so
// the position follows from one running step count on both sides.
#pragma once

namespace moejit {
namespace sm90 {

template <int kStages>
struct PipelineState {
  int count;   // steps walked since the kernel's start

  __device__ __forceinline__ int index() const { return count % kStages; }
  // The parity of the barrier phase this step waits for: flips at every pass round the ring.
  __device__ __forceinline__ int phase() const { return (count / kStages) & 1; }
  __device__ __forceinline__ PipelineState previous() const { return PipelineState{count - 1}; }
  __device__ __forceinline__ PipelineState& operator++() {
    ++count;
    return *this;
  }
  // Skips `steps` steps (the other pingpong warpgroup's tile).
  __device__ __forceinline__ PipelineState& operator+=(int steps) {
    count += steps;
    return *this;
  }
};

}  // namespace sm90
}  // namespace moejit
