// Element types and the tensor-core instruction each one uses. Elements are handled as
// raw 16-bit storage; only the mma and the final conversion know the number format.
#pragma once

namespace moejit {

struct bf16_t {
  unsigned short bits;
};
struct fp16_t {
  unsigned short bits;
};

// Sixteen bytes moved with one vector load or store (eight 16-bit elements).
struct alignas(16) Chunk16 {
  unsigned x, y, z, w;
};

template <class Element>
struct ElementOps;

template <>
struct ElementOps<bf16_t> {
  // D += A(16x16, row) x B(16x8, col), fp32 accumulators.
  static __device__ __forceinline__ void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                                     unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  // Two fp32 values rounded to nearest-even into one 32-bit register, `lo` in the low half.
  static __device__ __forceinline__ unsigned pack2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
  }
  // The two elements of a 32-bit register as fp32 (exact: bf16 is the top half of fp32).
  static __device__ __forceinline__ float low(unsigned pair) { return __uint_as_float(pair << 16); }
  static __device__ __forceinline__ float high(unsigned pair) { return __uint_as_float(pair & 0xffff0000u); }
};

template <>
struct ElementOps<fp16_t> {
  static __device__ __forceinline__ void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                                     unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ unsigned pack2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
  }
  static __device__ __forceinline__ float low(unsigned pair) { return half_to_float(pair & 0xffffu); }
  static __device__ __forceinline__ float high(unsigned pair) { return half_to_float(pair >> 16); }

 private:
  static __device__ __forceinline__ float half_to_float(unsigned bits) {
    float f;
    asm("{ .reg .b16 h; cvt.u16.u32 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "r"(bits));
    return f;
  }
};

// Eight elements of a 16-byte chunk as fp32, and back (rounded to nearest-even).
template <class Element>
__device__ __forceinline__ void unpack8(const Chunk16& c, float (&v)[8]) {
  const unsigned words[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = ElementOps<Element>::low(words[i]);
    v[2 * i + 1] = ElementOps<Element>::high(words[i]);
  }
}

template <class Element>
__device__ __forceinline__ Chunk16 pack8(const float (&v)[8]) {
  return Chunk16{ElementOps<Element>::pack2(v[0], v[1]), ElementOps<Element>::pack2(v[2], v[3]),
                 ElementOps<Element>::pack2(v[4], v[5]), ElementOps<Element>::pack2(v[6], v[7])};
}

}  // namespace moejit
