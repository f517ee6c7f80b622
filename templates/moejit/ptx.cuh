// Thin wrappers over PTX instructions of the sm_80 and sm_90 kernels. Inline PTX instead of
// the toolkit's intrinsic headers keeps the templates compilable by NVRTC alone.
#pragma once

namespace moejit {
namespace ptx {

// 32-bit shared-memory address of a generic pointer into shared memory.
__device__ __forceinline__ unsigned shared_address(const void* p) {
  unsigned address;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(address) : "l"(p));
  return address;
}

// 16-byte asynchronous copy global -> shared that bypasses L1 (.cg): operand tiles are
// consumed from shared memory, so caching them in L1 as well only evicts metadata.
__device__ __forceinline__ void cp_async_16(unsigned shared_dst, const void* global_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_dst), "l"(global_src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wait until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices from shared memory; lane i supplies the row address of matrix
// i/8, row i%8. With .trans each matrix arrives transposed.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], unsigned shared_src) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_src)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], unsigned shared_src) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_src)
               : "memory");
}

// Four 8x8 b16 matrices to shared memory, the inverse of ldmatrix_x4: lane i supplies
// the address of row i%8 of matrix i/8, and register j of every lane holds its fragment
// of matrix j (row lane/4, columns 2 (lane%4) and 2 (lane%4) + 1). sm_90.
__device__ __forceinline__ void stmatrix_x4(unsigned shared_dst, unsigned r0, unsigned r1, unsigned r2, unsigned r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(shared_dst), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

// A 4-byte load of global memory that no thread writes while the kernel runs, through the
// read-only (non-coherent) path: a topology index.
__device__ __forceinline__ int load_readonly(const int* p) {
  int value;
  asm("ld.global.nc.b32 %0, [%1];\n" : "=r"(value) : "l"(p));
  return value;
}
}  // namespace ptx
}  // namespace moejit
