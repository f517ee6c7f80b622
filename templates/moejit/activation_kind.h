// The activation functions of an expert MLP. Shared by the host (compiler/routing_spec.hpp
// names them in spec text) and the device template (activation.cuh). Plain C++.
#pragma once

namespace moejit {

enum class Activation {
  gelu,         // tanh approximation (MegaBlocks' default)
  gelu_exact,   // with erf
  silu,
  relu,
};

}  // namespace moejit
