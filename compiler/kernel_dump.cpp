#include "compiler/kernel_dump.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

namespace moejit {
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

fs::path stem(const std::string& dir, const KernelSpec& spec) {
  fs::create_directories(dir);
  return fs::path(dir) / fmt::format("{}-{}", spec.short_name(), spec.hash_hex().substr(0, 8));
}

}  // namespace

std::string dump_kernel(const std::string& dir, const CompiledKernel& kernel) {
  const fs::path base = stem(dir, kernel.spec);
  write_file(base.string() + ".cu", kernel.source);
  write_file(base.string() + ".ptx", kernel.ptx);
  write_file(base.string() + ".cubin", kernel.cubin);
  std::string options;
  for (const std::string& o : kernel.options) options += o + "\n";
  write_file(base.string() + ".log", fmt::format("{}\n\nNVRTC options:\n{}", kernel.log, options));
  write_file(base.string() + ".spec", kernel.spec.text() + "\n");
  return base.string();
}

std::string dump_failed_compile(const std::string& dir, const KernelSpec& spec, const std::string& source,
                                const std::string& log, const std::vector<std::string>& options) {
  const fs::path base = stem(dir, spec);
  write_file(base.string() + ".cu", source);
  write_file(base.string() + ".log", log + "\n");
  std::string lines;
  std::string nvcc = "nvcc -cubin";
  for (const std::string& o : options) {
    lines += o + "\n";
    // NVRTC and nvcc share these spellings, except --gpu-architecture takes sm_XY in both.
    if (o != "--ptxas-options=-v") nvcc += " " + o;
  }
  write_file(base.string() + ".options",
             fmt::format("{}\n# reproduce with the CUDA toolkit:\n# {} --ptxas-options=-v {}.cu\n", lines, nvcc,
                         base.filename().string()));
  return base.string();
}

}  // namespace moejit
