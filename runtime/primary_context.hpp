// A device's primary context: the one PyTorch and the CUDA runtime use, so our modules
// and launches share memory and streams with the caller's tensors.
#pragma once

#include <cuda.h>

#include "runtime/driver_api.hpp"

namespace moejit {

class PrimaryContext {
 public:
  PrimaryContext(const DriverApi& driver, int device);   // retains it
  ~PrimaryContext();                                     // releases it
  PrimaryContext(const PrimaryContext&) = delete;
  PrimaryContext& operator=(const PrimaryContext&) = delete;

  CUcontext get() const { return context_; }
  CUdevice device() const { return device_; }

 private:
  const DriverApi& driver_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
};

// Makes a context current on this thread for the scope, then restores the previous one,
// so a caller that had another device current is left as it was.
class ScopedContext {
 public:
  ScopedContext(const DriverApi& driver, CUcontext context);
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

 private:
  const DriverApi& driver_;
};

}  // namespace moejit
