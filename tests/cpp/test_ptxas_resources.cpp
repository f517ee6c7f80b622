// parse_ptxas_resources: resource usage out of the `ptxas info` lines of an NVRTC log.
#include <string>

#include <doctest/doctest.h>

#include "compiler/compiled_kernel.hpp"

using namespace moejit;

TEST_SUITE("ptxas_resources") {

TEST_CASE("a clean kernel, as NVRTC 13 reports it for sm_90a") {
  const std::string log =
      "ptxas info    : 38 bytes gmem\n"
      "ptxas info    : Compiling entry function "
      "'_ZN6moejit13bsr_gemm_sm80ILNS_6OpKindE0ELb0ELb1ENS_6bf16_tELi128ELxn1ELx114688ELx4096ELi128ELi128ELi32ELi4ELi2"
      "ELi2EEEvNS_13BsrGemmParamsE' for 'sm_90a'\n"
      "ptxas info    : Function properties for "
      "_ZN6moejit13bsr_gemm_sm80ILNS_6OpKindE0ELb0ELb1ENS_6bf16_tELi128ELxn1ELx114688ELx4096ELi128ELi128ELi32ELi4ELi2"
      "ELi2EEEvNS_13BsrGemmParamsE\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 228 registers, used 1 barriers\n"
      "ptxas info    : Compile time = 62.254 ms";
  const ResourceUsage r = parse_ptxas_resources(log);
  CHECK(r.registers == 228);
  CHECK(r.static_shared_bytes == 0);
  CHECK(r.stack_bytes == 0);
  CHECK(r.spill_store_bytes == 0);
  CHECK(r.spill_load_bytes == 0);
}

TEST_CASE("a spilling kernel with static shared memory") {
  const std::string log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_80'\n"
      "ptxas info    : Function properties for _Z6kernelPf\n"
      "    136 bytes stack frame, 124 bytes spill stores, 96 bytes spill loads\n"
      "ptxas info    : Used 255 registers, 16384 bytes smem, 360 bytes cmem[0]\n";
  const ResourceUsage r = parse_ptxas_resources(log);
  CHECK(r.registers == 255);
  CHECK(r.static_shared_bytes == 16384);
  CHECK(r.stack_bytes == 136);
  CHECK(r.spill_store_bytes == 124);
  CHECK(r.spill_load_bytes == 96);
}

TEST_CASE("the newer ptxas format with barriers, smem and cumulative stack") {
  const std::string log =
      "ptxas info    : Function properties for _Z1kv\n"
      "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 2 barriers, 8 bytes cumulative stack size, 1024 bytes smem\n"
      "ptxas info    : Compile time = 1.5 ms\n";
  const ResourceUsage r = parse_ptxas_resources(log);
  CHECK(r.registers == 40);
  CHECK(r.static_shared_bytes == 1024);
  CHECK(r.stack_bytes == 8);
  CHECK(r.spill_store_bytes == 4);
  CHECK(r.spill_load_bytes == 12);
}

TEST_CASE("an empty log, or one without ptxas lines, is all zeros") {
  for (const std::string& log : {std::string(), std::string("\n\n"), std::string("warning: something harmless\n"),
                                std::string("ptxas info    : 0 bytes gmem\n")}) {
    CAPTURE(log);
    const ResourceUsage r = parse_ptxas_resources(log);
    CHECK(r.registers == 0);
    CHECK(r.static_shared_bytes == 0);
    CHECK(r.stack_bytes == 0);
    CHECK(r.spill_store_bytes == 0);
    CHECK(r.spill_load_bytes == 0);
  }
}

}  // TEST_SUITE

TEST_CASE("kernel resources without a ptxas log come from the CUBIN, spills bounded by its frame") {
  // A cached compile: no ptxas lines. Not an ELF file either: nothing to read, all zero.
  CHECK(!read_cubin_resources("not an ELF file").has_value());
  CHECK(!read_cubin_resources("").has_value());
  const ResourceUsage none = kernel_resources("", "not an ELF file");
  CHECK(none.registers == 0);
  CHECK(none.spill_store_bytes == 0);
}
