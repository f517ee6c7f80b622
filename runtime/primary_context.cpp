#include "runtime/primary_context.hpp"

#include <fmt/format.h>

namespace moejit {

PrimaryContext::PrimaryContext(const DriverApi& driver, int device) : driver_(driver) {
  int count = 0;
  driver_.check(driver_.DeviceGetCount(&count), "cuDeviceGetCount");
  if (device < 0 || device >= count) {
    throw std::invalid_argument(
        fmt::format("device={}: expected a CUDA device index from 0 to {}", device, count - 1));
  }
  driver_.check(driver_.DeviceGet(&device_, device), "cuDeviceGet");
  driver_.check(driver_.DevicePrimaryCtxRetain(&context_, device_), "cuDevicePrimaryCtxRetain");
}

PrimaryContext::~PrimaryContext() { driver_.DevicePrimaryCtxRelease(device_); }

ScopedContext::ScopedContext(const DriverApi& driver, CUcontext context) : driver_(driver) {
  driver_.check(driver_.CtxPushCurrent(context), "cuCtxPushCurrent");
}

ScopedContext::~ScopedContext() {
  CUcontext popped = nullptr;
  driver_.CtxPopCurrent(&popped);
}

}  // namespace moejit
